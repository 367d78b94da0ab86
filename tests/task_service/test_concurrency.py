"""Concurrent writers: every acknowledged change is kept."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
from fastapi import FastAPI
from sqlmodel import col, func, select

from shared.deps import service_state
from task_service.models import Task
from tests.task_service.conftest import ALICE, auth, create_task, tasks_url


async def _count_stored(app: FastAPI) -> int:
    async with service_state(app).database.sessionmaker() as session:
        result = await session.exec(
            select(func.count()).select_from(Task).where(col(Task.user_id) == ALICE)
        )
        count: int = result.one()
        return count


async def test_concurrent_creates_are_all_stored(
    client: httpx2.AsyncClient, task_app: FastAPI
) -> None:
    responses = await asyncio.gather(
        *(client.post(tasks_url(), json={"title": f"t{n}"}, headers=auth()) for n in range(50))
    )

    assert [r.status_code for r in responses] == [201] * 50
    assert len({r.json()["id"] for r in responses}) == 50
    assert await _count_stored(task_app) == 50
    listed = await client.get(tasks_url(), headers=auth())
    assert listed.headers["x-total-count"] == "50"
    assert {t["title"] for t in listed.json()} == {f"t{n}" for n in range(50)}


async def test_concurrent_toggles_each_count(client: httpx2.AsyncClient) -> None:
    task = await create_task(client)
    url = tasks_url(task_id=task["id"])

    # Both toggle routes, interleaved: 25 flips in all.
    responses = await asyncio.gather(
        *(client.patch(url if n % 2 else f"{url}/complete", headers=auth()) for n in range(25))
    )

    assert [r.status_code for r in responses] == [200] * 25
    # Serialized flips from False answer True, False, True, ... in some order.
    states = [r.json()["completed"] for r in responses]
    assert (states.count(True), states.count(False)) == (13, 12)
    final = await client.get(url, headers=auth())
    assert final.json()["completed"] is True


async def test_concurrent_partial_updates_of_different_fields_all_survive(
    client: httpx2.AsyncClient,
) -> None:
    task = await create_task(client, title="Original")
    url = tasks_url(task_id=task["id"])
    changes: list[dict[str, Any]] = [
        {"title": "Renamed"},
        {"description": "Added notes"},
        {"priority": "high"},
        {"tags": ["urgent"]},
        {"due_date": "2030-05-05T05:05:05Z"},
    ]

    for _ in range(4):
        responses = await asyncio.gather(
            *(client.patch(url, json=change, headers=auth()) for change in changes),
            client.patch(url, headers=auth()),
        )
        assert [r.status_code for r in responses] == [200] * 6

    final = (await client.get(url, headers=auth())).json()
    for change in changes:
        assert {key: final[key] for key in change} == change
    assert final["completed"] is False  # toggled four times
