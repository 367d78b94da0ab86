"""The task service on each backend, a client for it, and ways to fill it with tasks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr

from shared.deps import service_state
from task_service.app import create_app
from task_service.models import Task, metadata
from task_service.settings import TaskSettings
from tests.support.databases import Backend, drop_schema, empty_tables, unique_schema
from tests.support.tokens import BETTER_AUTH_SECRET, SECRET_KEY, bearer, mint

ALICE = "alice"
BOB = "bob"


def task_settings(backend: Backend, **overrides: Any) -> TaskSettings:
    values: dict[str, Any] = {
        "secret_key": SecretStr(SECRET_KEY),
        "better_auth_secret": SecretStr(BETTER_AUTH_SECRET),
        "database_url": backend.secret_url,
        "data_dir": backend.data_dir,
        "task_db_schema": unique_schema("tasks"),
        **overrides,
    }
    return TaskSettings(_env_file=None, **values)


@contextlib.asynccontextmanager
async def running_app(settings: TaskSettings) -> AsyncIterator[FastAPI]:
    """The started service; its PostgreSQL schema is dropped afterwards."""
    app = create_app(settings)
    async with LifespanManager(app):
        yield app
    if settings.database_url is not None:
        await drop_schema(settings.database_url.get_secret_value(), settings.task_db_schema)


@contextlib.asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://tasks.test") as client:
        yield client


@pytest.fixture(scope="module")
async def task_app(backend: Backend) -> AsyncIterator[FastAPI]:
    async with running_app(task_settings(backend)) as app:
        yield app


@pytest.fixture
async def client(task_app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    async with client_for(task_app) as client:
        yield client
    await empty_tables(service_state(task_app).database, metadata)


def auth(user_id: str = ALICE) -> dict[str, str]:
    """Headers with an access token of our own auth service for this user."""
    return bearer(mint(sub=user_id))


def tasks_url(user_id: str = ALICE, task_id: int | str | None = None) -> str:
    base = f"/api/{user_id}/tasks"
    return base if task_id is None else f"{base}/{task_id}"


# Every task route of Alice, as (method, path, JSON body).
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", tasks_url(), None),
    ("POST", tasks_url(), {"title": "x"}),
    ("GET", tasks_url(task_id=1), None),
    ("PUT", tasks_url(task_id=1), {"title": "x"}),
    ("PATCH", tasks_url(task_id=1), {"title": "x"}),
    ("PATCH", tasks_url(task_id=1), None),
    ("PATCH", f"{tasks_url(task_id=1)}/complete", None),
    ("DELETE", tasks_url(task_id=1), None),
    ("DELETE", f"{tasks_url()}?status=completed", None),
]
ROUTE_IDS = [f"{method} {path} {'body' if body else ''}".strip() for method, path, body in ROUTES]


def moment(task: dict[str, Any], field: str) -> datetime:
    """A timestamp of a task as returned by the API, for comparisons."""
    return datetime.fromisoformat(task[field])


async def create_task(
    client: httpx2.AsyncClient, *, user_id: str = ALICE, **fields: Any
) -> dict[str, Any]:
    """Create a task through the API (title defaults to "Task") and return it."""
    response = await client.post(
        tasks_url(user_id), json={"title": "Task", **fields}, headers=auth(user_id)
    )
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def insert_tasks(app: FastAPI, *tasks: Task) -> list[int]:
    """Store tasks as given, timestamps included, bypassing the API; returns their ids."""
    async with service_state(app).database.sessionmaker() as session:
        session.add_all(tasks)
        await session.commit()
    return [task.id for task in tasks if task.id is not None]
