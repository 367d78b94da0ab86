"""POST /api/{user_id}/tasks and GET /api/{user_id}/tasks/{task_id}."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
from fastapi import FastAPI

from task_service.models import Task
from tests.task_service.conftest import ALICE, auth, create_task, insert_tasks, moment, tasks_url

TASK_FIELDS = {
    "id",
    "user_id",
    "title",
    "description",
    "completed",
    "priority",
    "due_date",
    "tags",
    "created_at",
    "updated_at",
}


async def test_create_with_only_a_title_fills_in_the_defaults(client: httpx2.AsyncClient) -> None:
    before = datetime.now(UTC)
    response = await client.post(tasks_url(), json={"title": "Buy milk"}, headers=auth())

    assert response.status_code == 201
    task = response.json()
    assert set(task) == TASK_FIELDS
    assert isinstance(task["id"], int)
    assert task["id"] >= 1
    assert task["user_id"] == ALICE
    assert task["title"] == "Buy milk"
    assert task["description"] is None
    assert task["completed"] is False
    assert task["priority"] == "medium"
    assert task["due_date"] is None
    assert task["tags"] == []
    assert task["created_at"] == task["updated_at"]
    created = moment(task, "created_at")
    assert created.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= created <= datetime.now(UTC)


async def test_create_stores_every_field_given(client: httpx2.AsyncClient) -> None:
    body: dict[str, Any] = {
        "title": "File taxes",
        "description": "Forms are in the drawer",
        "completed": True,
        "priority": "high",
        "due_date": "2030-04-15T17:00:00Z",
        "tags": ["admin", "money"],
    }

    created = await create_task(client, **body)
    read = await client.get(tasks_url(task_id=created["id"]), headers=auth())

    assert read.status_code == 200
    assert read.json() == created
    assert {key: created[key] for key in body} == body


async def test_each_task_gets_its_own_id(client: httpx2.AsyncClient) -> None:
    first = await create_task(client, title="one")
    second = await create_task(client, title="two")

    assert second["id"] != first["id"]
    assert (await client.get(tasks_url(task_id=first["id"]), headers=auth())).json()[
        "title"
    ] == "one"


async def test_reading_a_task_that_does_not_exist_is_404(client: httpx2.AsyncClient) -> None:
    response = await client.get(tasks_url(task_id=2**63 - 1), headers=auth())

    assert response.status_code == 404
    assert response.json()["code"] == "task_not_found"


async def test_unknown_and_read_only_fields_in_a_new_task_are_ignored(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.post(
        tasks_url(),
        json={
            "title": "Mine",
            "id": 999_999,
            "user_id": "mallory",
            "created_at": "2001-01-01T00:00:00Z",
            "colour": "blue",
        },
        headers=auth(),
    )

    assert response.status_code == 201
    task = response.json()
    assert task["id"] != 999_999
    assert task["user_id"] == ALICE
    assert not task["created_at"].startswith("2001")
    assert "colour" not in task


async def test_trailing_slashes_are_served_as_without_them(client: httpx2.AsyncClient) -> None:
    created = await client.post(f"{tasks_url()}/", json={"title": "slashed"}, headers=auth())
    task_id = created.json()["id"]
    read = await client.get(f"{tasks_url(task_id=task_id)}/", headers=auth())
    listed = await client.get(f"{tasks_url()}/", headers=auth())

    assert created.status_code == 201
    assert read.status_code == 200
    assert read.json()["title"] == "slashed"
    assert listed.headers["x-total-count"] == "1"


async def test_a_list_encodes_each_task_exactly_as_reading_it_does(
    client: httpx2.AsyncClient, task_app: FastAPI
) -> None:
    # Edge values of every field: whole seconds and microseconds, the first and last years,
    # nulls, text beyond ASCII and characters JSON escapes.
    start = datetime(2030, 1, 1, tzinfo=UTC)
    await insert_tasks(
        task_app,
        Task(user_id=ALICE, title="plain", created_at=start, updated_at=start),
        Task(
            user_id=ALICE,
            title='Öl "quoted" \\ 🎉\t\u2028',
            description="line\nbreak",
            completed=True,
            priority="high",
            due_date=datetime(1, 1, 1, tzinfo=UTC),
            tags=["ä", "b c"],
            created_at=start + timedelta(microseconds=1),
            updated_at=start + timedelta(days=1, microseconds=999_999),
        ),
        Task(
            user_id=ALICE,
            title="last",
            priority="low",
            due_date=datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
            created_at=start + timedelta(seconds=1),
            updated_at=start,
        ),
    )

    listed = await client.get(tasks_url(), headers=auth())
    ids = [task["id"] for task in listed.json()]
    reads = [(await client.get(tasks_url(task_id=i), headers=auth())).content for i in ids]

    assert len(ids) == 3
    assert listed.headers["content-type"] == "application/json"
    assert listed.content == b"[" + b",".join(reads) + b"]"
