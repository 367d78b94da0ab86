"""GET /health, and behaviour while the database is unreachable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from auth_service.app import create_app
from tests.auth_service.conftest import auth_settings
from tests.support.databases import Backend, drop_schema, rewrite_url
from tests.support.tcp_proxy import TcpProxy
from tests.support.tokens import bearer


async def test_health_runs_a_real_query(client: httpx2.AsyncClient, backend: Backend) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == body["database"] == "ok"
    assert body["storage"] == ("postgresql" if backend.is_postgres else "sqlite")
    assert (body["warning"] is None) == backend.is_postgres


@pytest.fixture
async def app_behind_proxy(
    proxy: TcpProxy, postgres_url: str, tmp_path: Path
) -> AsyncIterator[FastAPI]:
    backend = Backend("postgres", rewrite_url(postgres_url, port=proxy.port), tmp_path)
    settings = auth_settings(backend, db_connect_timeout=2.0)
    app = create_app(settings)
    async with LifespanManager(app):
        yield app
    await drop_schema(postgres_url, settings.auth_db_schema)


@pytest.mark.postgres
async def test_database_outage_is_a_fast_503_and_the_service_recovers_by_itself(
    app_behind_proxy: FastAPI, proxy: TcpProxy
) -> None:
    transport = httpx2.ASGITransport(app=app_behind_proxy)
    async with httpx2.AsyncClient(transport=transport, base_url="http://auth.test") as client:
        registered = await client.post(
            "/auth/register", json={"email": "ops@example.com", "password": "correct horse"}
        )
        token = registered.json()["access_token"]

        await proxy.cut()
        started = time.monotonic()
        during = await client.get("/api/users/me", headers=bearer(token))
        health = await client.get("/health")
        live = await client.get("/health/live")
        login = await client.post(
            "/auth/login", json={"email": "ops@example.com", "password": "correct horse"}
        )
        elapsed = time.monotonic() - started

        assert during.status_code == 503
        assert during.json()["code"] == "service_unavailable"
        assert during.headers["retry-after"] == "5"
        assert health.status_code == 503
        assert health.json()["database"] == "unavailable"
        assert live.status_code == 200, "liveness must not depend on the database"
        assert login.status_code == 503
        assert elapsed < 10

        await proxy.restore()
        after = await client.get("/api/users/me", headers=bearer(token))
        assert after.status_code == 200
        assert (await client.get("/health")).status_code == 200


@pytest.mark.postgres
async def test_a_stalled_database_is_a_503_within_seconds_and_the_service_recovers(
    proxy: TcpProxy, postgres_url: str, tmp_path: Path
) -> None:
    # Default timeouts: they are what is under test.
    backend = Backend("postgres", rewrite_url(postgres_url, port=proxy.port), tmp_path)
    settings = auth_settings(backend)
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://auth.test") as client:
            registered = await client.post(
                "/auth/register", json={"email": "ops@example.com", "password": "correct horse"}
            )
            headers = bearer(registered.json()["access_token"])

            # Connections are accepted but never answered, pooled and new ones alike; more
            # requests than the pool holds, so some wait for a connection.
            proxy.stall()
            started = time.monotonic()
            during = await asyncio.gather(
                *(client.get("/api/users/me", headers=headers) for _ in range(15))
            )
            elapsed = time.monotonic() - started
            proxy.resume()
            after = await client.get("/api/users/me", headers=headers)
    await drop_schema(postgres_url, settings.auth_db_schema)

    assert {response.status_code for response in during} == {503}
    assert elapsed < 12
    assert after.status_code == 200


@pytest.mark.postgres
async def test_start_up_waits_for_a_database_that_is_briefly_down(
    proxy: TcpProxy, postgres_url: str, tmp_path: Path
) -> None:
    backend = Backend("postgres", rewrite_url(postgres_url, port=proxy.port), tmp_path)
    settings = auth_settings(backend, db_connect_timeout=2.0)
    app = create_app(settings)
    await proxy.cut()

    async def bring_back() -> None:
        await asyncio.sleep(1.0)
        await proxy.restore()

    restoring = asyncio.create_task(bring_back())
    try:
        async with LifespanManager(app, startup_timeout=20):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://a.test") as client:
                assert (await client.get("/health")).status_code == 200
    finally:
        await restoring
        await drop_schema(postgres_url, settings.auth_db_schema)


@pytest.mark.postgres
async def test_database_url_password_never_reaches_the_logs(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The test server trusts every local connection, so any password is accepted.
    backend = Backend("postgres", rewrite_url(postgres_url, password="s3cr3t-pw"), tmp_path)
    settings = auth_settings(backend)
    app = create_app(settings)

    with caplog.at_level("DEBUG"):
        async with LifespanManager(app):
            pass
    await drop_schema(postgres_url, settings.auth_db_schema)

    assert "Storage: postgresql" in caplog.text
    assert "s3cr3t-pw" not in caplog.text
