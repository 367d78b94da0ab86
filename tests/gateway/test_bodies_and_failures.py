"""Streaming, body limits, and what clients get when a service fails."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import httpx2
import pytest
import uvicorn

import gateway.upstream
from gateway.upstream import KEEPALIVE_EXPIRY_SECONDS
from tests.gateway.conftest import (
    GatewayFactory,
    GatewayUnderTest,
    eventually,
    send_and_hang_up,
)
from tests.support.http_server import free_port


async def test_large_response_streams_before_the_upstream_finishes(
    gateway: GatewayUnderTest,
) -> None:
    size = 20 * 1024 * 1024
    async with (
        gateway.client() as client,
        client.stream("GET", f"/api/u/stream?size={size}") as response,
    ):
        chunks = response.aiter_raw()
        first = await anext(chunks)
        # The upstream is still holding the rest back: the first bytes came through anyway.
        assert not gateway.tasks.release.is_set()
        gateway.tasks.release.set()
        received = len(first) + sum([len(chunk) async for chunk in chunks])

    assert response.status_code == 200
    assert received == size


# The gateway's server tells it at once that a client left; under uvicorn's own protocol a
# task of the gateway's waits for the disconnect instead.
SERVERS = pytest.mark.parametrize("http", [None, "httptools"], ids=["its-server", "uvicorn"])


@SERVERS
async def test_a_response_is_dropped_upstream_when_the_client_leaves(
    make_gateway: GatewayFactory, http: str | None
) -> None:
    size = 20 * 1024 * 1024
    async with make_gateway(http=http) as gateway:
        async with (
            gateway.client() as client,
            client.stream("GET", f"/api/u/stream?size={size}") as response,
        ):
            await anext(response.aiter_raw())
        # Leaving the block mid-body closed the connection; the upstream is still holding back.

        await eventually(gateway.tasks.client_gone.is_set)
        gateway.tasks.release.set()


@SERVERS
async def test_a_request_is_dropped_upstream_when_the_client_stops_waiting(
    make_gateway: GatewayFactory, http: str | None
) -> None:
    async with make_gateway(http=http) as gateway:
        async with gateway.client(timeout=0.5) as client:
            with pytest.raises(httpx2.ReadTimeout):
                await client.get("/api/u/stall")

        # The gateway's own upstream timeout is 30 s: it must not wait that long for no one.
        await eventually(gateway.tasks.client_gone.is_set)


async def test_a_chunked_body_reaches_the_upstream_whole_with_its_length(
    gateway: GatewayUnderTest,
) -> None:
    async def upload() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"y" * 10_000

    async with gateway.client() as client:
        response = await client.post("/api/u/tasks", content=upload())

    assert response.json()["body_length"] == 100_000
    # The gateway frames what it sends: the client's chunking is not relayed.
    assert gateway.tasks.requests[-1].header("transfer-encoding") is None
    assert gateway.tasks.requests[-1].header("content-length") == "100000"


async def test_declared_oversized_body_is_413_without_reaching_a_service(
    make_gateway: GatewayFactory,
) -> None:
    async with make_gateway(max_body_bytes=1000) as gateway, gateway.client() as client:
        fits = await client.post("/api/u/tasks", content=b"a" * 1000)
        too_big = await client.post("/api/u/tasks", content=b"a" * 1001)

    assert fits.status_code == 200
    assert too_big.status_code == 413
    assert too_big.json() == {"detail": "Request body too large", "code": "body_too_large"}
    assert len(gateway.tasks.requests) == 1


async def test_chunked_body_over_the_limit_is_413(make_gateway: GatewayFactory) -> None:
    async def upload() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"z" * 1000

    async with make_gateway(max_body_bytes=10_000) as gateway, gateway.client() as client:
        response = await client.post("/api/u/tasks", content=upload())

    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large", "code": "body_too_large"}


async def test_refused_upstream_is_a_fast_502(make_gateway: GatewayFactory) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with make_gateway(task_service_url=closed) as gateway, gateway.client() as client:
        started = time.monotonic()
        response = await client.get("/api/u/tasks")
        elapsed = time.monotonic() - started

    assert response.status_code == 502
    assert response.json() == {"detail": "Task service unreachable", "code": "upstream_unreachable"}
    assert "x-request-id" in response.headers
    assert elapsed < 5


async def test_stalled_upstream_is_a_504_after_the_timeout(make_gateway: GatewayFactory) -> None:
    async with make_gateway(upstream_timeout=0.5) as gateway, gateway.client() as client:
        started = time.monotonic()
        response = await client.get("/auth/stall")
        elapsed = time.monotonic() - started

    assert response.status_code == 504
    assert response.json() == {"detail": "Auth service timed out", "code": "upstream_timeout"}
    assert elapsed < 5


async def test_a_saturated_service_is_503_busy_and_holds_up_nothing_else(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway.upstream, "MAX_CONNECTIONS_PER_SERVICE", 3)
    async with (
        make_gateway(upstream_connect_timeout=0.5) as running,
        running.client() as client,
    ):
        stalled = [asyncio.create_task(client.get("/api/u/stall")) for _ in range(3)]
        await eventually(lambda: len(running.tasks.requests) == 3)

        busy = await client.get("/api/u/tasks")
        auth = await client.get("/auth/login")
        health = await client.get("/health")
        spec = await client.get("/openapi.json")

        for request in stalled:
            request.cancel()
        await asyncio.gather(*stalled, return_exceptions=True)

    assert busy.status_code == 503
    assert busy.json() == {
        "detail": "Task service is busy, retry shortly",
        "code": "upstream_busy",
    }
    assert busy.headers["retry-after"] == "5"
    assert auth.status_code == 200
    assert auth.json()["service"] == "auth"
    # The stand-in was asked, not given up on: its echo is in the report.
    assert health.json()["services"]["tasks"]["service"] == "tasks"
    assert spec.status_code == 200


async def test_health_is_ok_when_every_service_is(gateway: GatewayUnderTest) -> None:
    async with gateway.client() as client:
        response = await client.get("/health")

    # The stand-ins echo instead of reporting "ok": the gateway must say they are not healthy.
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["services"]["gateway"] == {"status": "ok"}
    assert body["services"]["auth"]["service"] == "auth"


async def test_health_names_the_service_that_is_down(make_gateway: GatewayFactory) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    gateway_started = make_gateway(auth_service_url=closed, health_timeout=0.5)
    async with gateway_started as gateway, gateway.client() as client:
        started = time.monotonic()
        response = await client.get("/health")
        elapsed = time.monotonic() - started
        live = await client.get("/health/live")

    assert response.status_code == 503
    assert response.json()["services"]["auth"] == {"status": "unreachable"}
    assert live.status_code == 200
    assert elapsed < 3


async def test_many_concurrent_requests_share_the_pool(gateway: GatewayUnderTest) -> None:
    async with gateway.client(limits=httpx2.Limits(max_connections=50)) as client:
        responses = await asyncio.gather(*(client.get(f"/api/u{n}/tasks") for n in range(200)))

    assert all(r.status_code == 200 for r in responses)
    assert len(gateway.tasks.requests) == 200


def test_pooled_connections_expire_before_a_service_closes_them() -> None:
    # Reusing a connection the service is closing at that instant fails the request with a
    # read error (seen as a rare 502 under load): the pool must let go first.
    service = uvicorn.Config(app="task_service.main:app")

    assert service.timeout_keep_alive > KEEPALIVE_EXPIRY_SECONDS


def _handled(caplog: pytest.LogCaptureFixture, method: str, path: str) -> bool:
    """Whether the gateway has written its access log line for this request."""
    return any(
        record.name == "access" and record.getMessage().startswith(f"{method} {path} ")
        for record in caplog.records
    )


@pytest.mark.parametrize(
    ("path", "head", "sent"),
    [
        ("/api/cut-declared/tasks", b"Content-Length: 900\r\n", b"x" * 10),
        ("/api/cut-chunked/tasks", b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n"),
    ],
)
async def test_an_upload_the_client_abandons_is_abandoned_upstream_too(
    gateway: GatewayUnderTest,
    caplog: pytest.LogCaptureFixture,
    path: str,
    head: bytes,
    sent: bytes,
) -> None:
    caplog.set_level(logging.INFO)
    request = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: gw\r\n" + head + b"\r\n" + sent

    await send_and_hang_up(gateway.url, request)
    await eventually(lambda: _handled(caplog, "POST", path))

    # The service never sees any of a cut-off request: it is sent only once it is whole...
    assert gateway.tasks.requests == []
    assert gateway.tasks.aborted == []
    # ...and a client hanging up is no error of the gateway's: 499, at INFO.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert _handled(caplog, "POST", f"{path} 499")
