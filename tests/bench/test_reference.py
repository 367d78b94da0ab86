"""The benchmark's reference answers what the task service answers, from the same rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from bench import reference
from task_service.settings import TaskSettings
from tests.support.databases import Backend
from tests.task_service.conftest import (
    ALICE,
    auth,
    client_for,
    create_task,
    running_app,
    task_settings,
    tasks_url,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def settings(postgres_url: str, tmp_path: Path) -> TaskSettings:
    return task_settings(Backend("postgres", postgres_url, tmp_path))


@pytest.fixture
async def service(settings: TaskSettings) -> AsyncIterator[FastAPI]:
    async with running_app(settings) as app:
        yield app


@pytest.fixture
async def referenced(
    service: FastAPI, settings: TaskSettings, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx2.AsyncClient]:
    """A client of the reference, on the service's own schema."""
    monkeypatch.setenv("REFERENCE_DATABASE_URL", postgres_url)
    monkeypatch.setenv("REFERENCE_SCHEMA", settings.task_db_schema)
    async with LifespanManager(reference.app):
        transport = httpx2.ASGITransport(app=reference.app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://ref.test") as client:
            yield client


async def test_the_list_is_the_same_json_with_the_same_total(
    service: FastAPI, referenced: httpx2.AsyncClient
) -> None:
    async with client_for(service) as client:
        await create_task(client, title="plain")
        await create_task(
            client,
            title="full",
            description="with every field",
            priority="high",
            due_date="2030-01-02T03:04:05.678901Z",
            tags=["a", "b"],
        )
        expected = await client.get(tasks_url(), headers=auth())

    got = await referenced.get(tasks_url())

    assert got.status_code == expected.status_code == 200
    assert got.json() == expected.json()
    assert len(got.json()) == 2
    assert got.headers["x-total-count"] == expected.headers["x-total-count"] == "2"


async def test_create_and_toggle_answer_the_tasks_the_service_then_reads(
    service: FastAPI, referenced: httpx2.AsyncClient
) -> None:
    created = await referenced.post(
        tasks_url(), json={"title": "benchmark task", "priority": "high", "tags": ["bench"]}
    )
    assert created.status_code == 201
    task = created.json()
    toggled = await referenced.patch(f"{tasks_url(task_id=task['id'])}/complete")

    async with client_for(service) as client:
        read = await client.get(tasks_url(task_id=task["id"]), headers=auth())

    assert read.status_code == 200
    assert toggled.status_code == 200
    assert toggled.json() == read.json()
    assert read.json()["completed"] is True
    assert {
        key: value for key, value in task.items() if key not in ("completed", "updated_at")
    } == {
        key: value for key, value in read.json().items() if key not in ("completed", "updated_at")
    }
    assert read.json()["user_id"] == ALICE
