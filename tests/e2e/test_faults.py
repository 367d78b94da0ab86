"""The live stack under faults: the database going away, a service killed, a burst of
writes, slow clients. Nothing acknowledged may be lost, and nothing may hang."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from sqlalchemy.engine import make_url

from tests.e2e.conftest import Stack, drop_stack_schemas_async, start_stack, stop_promptly
from tests.support.databases import rewrite_url, unique_schema
from tests.support.tcp_proxy import TcpProxy
from tests.support.tokens import bearer

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
async def db_proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    target = make_url(postgres_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.cut()


@pytest.fixture(scope="module")
async def stack(
    db_proxy: TcpProxy, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """The stack, reaching PostgreSQL through a proxy the tests can cut."""
    running = start_stack(
        tmp_path_factory.mktemp("faults"),
        DATABASE_URL=rewrite_url(postgres_url, port=db_proxy.port),
        AUTH_DB_SCHEMA=unique_schema("auth"),
        TASK_DB_SCHEMA=unique_schema("tasks"),
        DB_CONNECT_TIMEOUT="2",
        AUTH_RATE_LIMIT="100000/minute",
    )
    try:
        await running.until_healthy()
        yield running
    finally:
        # Stopped from a thread: this loop keeps forwarding the services' last queries.
        await asyncio.to_thread(stop_promptly, running)
        await drop_stack_schemas_async(postgres_url, running)


@pytest.fixture(autouse=True)
async def _database_back_after_each_test(db_proxy: TcpProxy) -> AsyncIterator[None]:
    """A test that fails mid-outage must not leave the next ones without a database."""
    yield
    await db_proxy.restore()


async def _sign_up(client: httpx2.AsyncClient, email: str) -> tuple[dict[str, str], str]:
    response = await client.post(
        "/auth/register", json={"email": email, "password": "correct horse"}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return bearer(body["access_token"]), f"/api/{body['user']['id']}/tasks"


async def _wait_for(client: httpx2.AsyncClient, path: str, headers: dict[str, str]) -> float:
    """Seconds until `path` answers 200 again (fails after 30)."""
    started = time.monotonic()
    while time.monotonic() - started < 30:
        try:
            if (await client.get(path, headers=headers)).status_code == 200:
                return time.monotonic() - started
        except httpx2.HTTPError:
            pass
        await asyncio.sleep(0.1)
    pytest.fail(f"{path} did not recover within 30 s")


async def test_database_outage_is_fast_503s_then_recovery_with_nothing_acknowledged_lost(
    stack: Stack, db_proxy: TcpProxy
) -> None:
    async with stack.async_client() as client:
        auth, tasks = await _sign_up(client, "outage@example.com")

        async def create(n: int, delay: float = 0) -> httpx2.Response:
            await asyncio.sleep(delay)
            return await client.post(tasks, headers=auth, json={"title": f"write {n}"})

        async def cut_after(delay: float) -> None:
            await asyncio.sleep(delay)
            await db_proxy.cut()

        before = [await create(n) for n in range(10)]
        assert [r.status_code for r in before] == [201] * 10
        # Writes racing the outage, 10 ms apart with the cut among them: each either lands
        # and is acknowledged, or fails with 503; an acknowledged one must never be lost.
        racing = await asyncio.gather(
            *(create(n, delay=(n - 10) * 0.01) for n in range(10, 40)), cut_after(0.15)
        )
        responses = before + [r for r in racing if isinstance(r, httpx2.Response)]
        acknowledged = {r.json()["title"] for r in responses if r.status_code == 201}
        assert {r.status_code for r in responses} <= {201, 503}

        started = time.monotonic()
        listing = await client.get(tasks, headers=auth)
        login = await client.post(
            "/auth/login", json={"email": "outage@example.com", "password": "correct horse"}
        )
        health = await client.get("/health")
        elapsed = time.monotonic() - started

        assert listing.status_code == login.status_code == 503
        assert listing.json()["code"] == login.json()["code"] == "service_unavailable"
        assert health.status_code == 503
        assert health.json()["services"]["tasks"]["database"] == "unavailable"
        assert elapsed < 10, "an outage must fail fast, not hang"

        await db_proxy.restore()
        await _wait_for(client, tasks, auth)
        stored = {t["title"] for t in (await client.get(tasks, headers=auth)).json()}
        assert acknowledged <= stored
        assert (await client.get("/health")).status_code == 200


async def test_a_killed_service_is_a_fast_502_until_supervisord_restarts_it(
    stack: Stack,
) -> None:
    async with stack.async_client() as client:
        auth, tasks = await _sign_up(client, "killed@example.com")
        os.kill(stack.pid("auth"), signal.SIGKILL)

        started = time.monotonic()
        during = await client.get("/api/users/me", headers=auth)
        elapsed = time.monotonic() - started
        # The task service checks tokens itself: it keeps working without the auth service.
        tasks_meanwhile = await client.get(tasks, headers=auth)
        recovery = await _wait_for(client, "/api/users/me", auth)

    assert during.status_code in {502, 503}
    assert during.json()["detail"]
    assert elapsed < 2
    assert tasks_meanwhile.status_code == 200
    assert recovery < 30


async def test_two_hundred_concurrent_creates_are_all_stored(stack: Stack) -> None:
    limits = httpx2.Limits(max_connections=50)
    async with stack.async_client(limits=limits) as client:
        users = [await _sign_up(client, f"burst{n}@example.com") for n in range(5)]
        responses = await asyncio.gather(
            *(
                client.post(tasks, headers=auth, json={"title": f"burst {n}"})
                for n in range(40)
                for auth, tasks in users
            )
        )
        assert [r.status_code for r in responses] == [201] * 200
        for auth, tasks in users:
            listing = await client.get(tasks, headers=auth)
            assert listing.headers["x-total-count"] == "40"
            assert {t["title"] for t in listing.json()} == {f"burst {n}" for n in range(40)}


async def test_slow_clients_do_not_hold_up_others(stack: Stack) -> None:
    port = int(stack.env["PORT"])
    slow = []
    for _ in range(100):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: slow\r\n")
        slow.append(sock)
    try:
        latencies = []
        async with stack.async_client() as client:
            for round_ in range(10):
                for sock in slow:
                    sock.sendall(f"X-Drip-{round_}: x\r\n".encode())  # never finishing headers
                started = time.monotonic()
                response = await client.get("/")
                latencies.append(time.monotonic() - started)
                assert response.status_code == 200
                await asyncio.sleep(0.1)
    finally:
        for sock in slow:
            sock.close()

    assert max(latencies) < 1.0
