"""GET /health, and behaviour while the database is unreachable."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI

from tests.support.databases import Backend, rewrite_url
from tests.support.tcp_proxy import TcpProxy
from tests.task_service.conftest import auth, client_for, running_app, task_settings, tasks_url


async def test_health_reports_the_task_database(
    client: httpx2.AsyncClient, backend: Backend
) -> None:
    # The endpoint itself is shared and tested with the auth service; here: it is mounted
    # and pings this service's own database.
    response = await client.get("/health")

    assert (response.status_code, response.json()["database"]) == (200, "ok")
    assert response.json()["storage"] == ("postgresql" if backend.is_postgres else "sqlite")


@pytest.fixture
async def app_behind_proxy(
    proxy: TcpProxy, postgres_url: str, tmp_path: Path
) -> AsyncIterator[FastAPI]:
    backend = Backend("postgres", rewrite_url(postgres_url, port=proxy.port), tmp_path)
    async with running_app(task_settings(backend, db_connect_timeout=2.0)) as app:
        yield app


@pytest.mark.postgres
async def test_database_outage_is_a_fast_503_and_the_service_recovers_by_itself(
    app_behind_proxy: FastAPI, proxy: TcpProxy
) -> None:
    async with client_for(app_behind_proxy) as client:
        created = await client.post(tasks_url(), json={"title": "before"}, headers=auth())
        assert created.status_code == 201

        await proxy.cut()
        started = time.monotonic()
        listed = await client.get(tasks_url(), headers=auth())
        posted = await client.post(tasks_url(), json={"title": "during"}, headers=auth())
        toggled = await client.patch(tasks_url(task_id=created.json()["id"]), headers=auth())
        health = await client.get("/health")
        elapsed = time.monotonic() - started

        for response in (listed, posted, toggled):
            assert response.status_code == 503
            assert response.json()["code"] == "service_unavailable"
            assert response.headers["retry-after"] == "5"
        assert health.status_code == 503
        assert elapsed < 10

        await proxy.restore()
        after = await client.get(tasks_url(), headers=auth())
        assert after.status_code == 200
        assert [task["title"] for task in after.json()] == ["before"]
        assert after.json()[0]["completed"] is False
        assert (await client.get("/health")).status_code == 200
