"""X-Total-Count from the counts the database keeps per user, priority and completed state.

Every check lists with limit=1, so any combination with a matching task fills its page and
its total comes from the kept counts, not from the page; then it compares each total with
COUNT(*) over the tasks themselves.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from sqlmodel import col, delete, func, select, update

from shared.db import Database, create_database
from shared.deps import service_state
from shared.migrations import upgrade_database
from task_service.app import MIGRATIONS_DIR
from task_service.models import PRIORITIES, Task, TaskCount
from tests.support.databases import Backend, drop_schema
from tests.task_service.conftest import ALICE, auth, create_task, task_settings, tasks_url

STATUSES = ("all", "pending", "completed")
# Every filter a list may combine with a status: no priority, or one of them.
PRIORITY_FILTERS: tuple[str | None, ...] = (None, *PRIORITIES)
Combination = tuple[str, str | None]
COMBINATIONS: list[Combination] = list(itertools.product(STATUSES, PRIORITY_FILTERS))


async def _listed_totals(
    client: httpx2.AsyncClient, user_id: str = ALICE, **params: Any
) -> dict[Combination, int]:
    """X-Total-Count for every status and priority filter."""
    totals = {}
    for status, priority in COMBINATIONS:
        query = {"status": status, "limit": 1, **params}
        if priority is not None:
            query["priority"] = priority
        response = await client.get(tasks_url(user_id), params=query, headers=auth(user_id))
        assert response.status_code == 200, response.text
        totals[status, priority] = int(response.headers["x-total-count"])
    return totals


async def _counted_totals(database: Database, user_id: str = ALICE) -> dict[Combination, int]:
    """The same totals, by COUNT(*) over the user's tasks."""
    async with database.sessionmaker() as session:
        result = await session.exec(
            select(col(Task.priority), col(Task.completed), func.count())
            .where(col(Task.user_id) == user_id)
            .group_by(col(Task.priority), col(Task.completed))
        )
        groups = result.all()
    return {
        (status, priority): sum(
            count
            for task_priority, completed, count in groups
            if priority in (None, task_priority)
            and status in ("all", "completed" if completed else "pending")
        )
        for status, priority in COMBINATIONS
    }


async def _exact_totals(
    client: httpx2.AsyncClient, app: FastAPI, user_id: str = ALICE
) -> dict[Combination, int]:
    """Every listed total, checked against a real count; returned for further checks."""
    counted = await _counted_totals(service_state(app).database, user_id)
    assert await _listed_totals(client, user_id) == counted
    return counted


async def _set_kept_count(app: FastAPI, priority: str, completed: bool, count: int) -> None:
    """Overwrite one of Alice's kept counts, as a write with the triggers off would leave it."""
    async with service_state(app).database.sessionmaker() as session:
        await session.exec(
            update(TaskCount)
            .where(
                col(TaskCount.user_id) == ALICE,
                col(TaskCount.priority) == priority,
                col(TaskCount.completed).is_(completed),
            )
            .values(count=count)
        )
        await session.commit()


async def test_counts_follow_every_kind_of_write(
    client: httpx2.AsyncClient, task_app: FastAPI
) -> None:
    ids = [
        (await create_task(client, title=f"t{n}", priority=priority, completed=n % 4 == 0))["id"]
        for n, priority in enumerate(PRIORITIES * 4)
    ]
    totals = await _exact_totals(client, task_app)
    assert totals["all", None] == 12
    assert totals["completed", None] == 3
    assert totals["pending", "high"] == 3

    async def check(method: str, url: str, body: dict[str, Any] | None = None) -> None:
        response = await client.request(method, url, json=body, headers=auth())
        assert response.is_success, response.text
        await _exact_totals(client, task_app)

    task = tasks_url
    # PUT moving a task across both priority and state, and across each alone.
    await check("PUT", task(task_id=ids[1]), {"title": "x", "priority": "high", "completed": True})
    await check("PUT", task(task_id=ids[2]), {"title": "x", "priority": "low"})
    await check("PUT", task(task_id=ids[4]), {"completed": False})
    # PATCH bodies: priority alone, priority and state, neither (no move).
    await check("PATCH", task(task_id=ids[5]), {"priority": "low"})
    await check("PATCH", task(task_id=ids[6]), {"priority": "medium", "completed": True})
    await check("PATCH", task(task_id=ids[7]), {"title": "renamed", "priority": "medium"})
    # Toggles both ways, by both routes.
    await check("PATCH", task(task_id=ids[0]))
    await check("PATCH", task(task_id=ids[8]))
    await check("PATCH", f"{task(task_id=ids[9])}/complete")
    await check("PATCH", f"{task(task_id=ids[6])}/complete")
    # Deletes of a completed and of a pending task.
    await check("DELETE", task(task_id=ids[1]))
    await check("DELETE", task(task_id=ids[10]))
    # And a new task among the moved ones.
    await check("POST", task(), {"title": "late", "priority": "low", "completed": True})

    totals = await _exact_totals(client, task_app)
    assert (totals["all", None], totals["completed", None], totals["pending", "low"]) == (11, 2, 4)
    # Clearing the completed ones, of two priorities, in one statement.
    await check("DELETE", f"{task()}?status=completed")
    totals = await _exact_totals(client, task_app)
    assert (totals["all", None], totals["completed", None], totals["pending", "low"]) == (9, 0, 4)


async def test_users_are_counted_apart(client: httpx2.AsyncClient, task_app: FastAPI) -> None:
    for priority in PRIORITIES:
        await create_task(client, priority=priority)
    await create_task(client, user_id="bob", completed=True, priority="high")

    assert (await _exact_totals(client, task_app))["all", None] == 3
    bob = await _exact_totals(client, task_app, "bob")
    assert {combination for combination, total in bob.items() if total} == {
        ("all", None),
        ("all", "high"),
        ("completed", None),
        ("completed", "high"),
    }
    assert set((await _exact_totals(client, task_app, "carol")).values()) == {0}


async def test_a_full_page_takes_its_total_from_the_kept_counts(
    client: httpx2.AsyncClient, task_app: FastAPI
) -> None:
    for _ in range(3):
        await create_task(client, priority="high")
    # More than there are: the total is still plausible, and read rather than counted.
    await _set_kept_count(task_app, "high", False, 13)

    def total(response: httpx2.Response) -> int:
        return int(response.headers["x-total-count"])

    url, headers = tasks_url(), auth()
    full = await client.get(url, params={"priority": "high", "limit": 2}, headers=headers)
    assert (len(full.json()), total(full)) == (2, 13)
    also = await client.get(url, params={"status": "pending", "limit": 2}, headers=headers)
    assert total(also) == 13
    # A short page tells its total by itself.
    short = await client.get(url, params={"priority": "high", "limit": 5}, headers=headers)
    assert (len(short.json()), total(short)) == (3, 3)
    # Tag and text filters always count.
    searched = await client.get(url, params={"q": "Task", "limit": 2}, headers=headers)
    assert total(searched) == 3


@pytest.mark.parametrize(
    ("kept", "params"),
    [
        (1, {"limit": 2}),  # fewer than the full page shows
        (0, {"limit": 1, "offset": 2}),  # fewer than offset + the page
        (10, {"limit": 2, "offset": 5}),  # more, although the page past the end is empty
    ],
)
async def test_counts_that_contradict_the_page_are_replaced_by_a_count(
    client: httpx2.AsyncClient, task_app: FastAPI, kept: int, params: dict[str, int]
) -> None:
    for _ in range(3):
        await create_task(client, priority="high")
    await _set_kept_count(task_app, "high", False, kept)

    for filters in ({}, {"priority": "high"}, {"status": "pending", "priority": "high"}):
        response = await client.get(tasks_url(), params={**params, **filters}, headers=auth())
        assert response.headers["x-total-count"] == "3", filters


async def test_missing_counts_fall_back_to_counting(
    client: httpx2.AsyncClient, task_app: FastAPI
) -> None:
    for n, priority in enumerate(PRIORITIES * 2):
        await create_task(client, title=f"t{n}", priority=priority, completed=n == 0)
    async with service_state(task_app).database.sessionmaker() as session:
        await session.exec(delete(TaskCount))
        await session.commit()

    assert (await _exact_totals(client, task_app))["pending", "medium"] == 2


async def _create_at_once(client: httpx2.AsyncClient, count: int) -> list[int]:
    """The ids of `count` tasks created concurrently, across every priority and status."""
    created = await asyncio.gather(
        *(
            create_task(client, title=f"c{n}", priority=PRIORITIES[n % 3], completed=n % 2 == 0)
            for n in range(count)
        )
    )
    return [task["id"] for task in created]


async def test_counts_stay_exact_under_concurrent_writes(
    client: httpx2.AsyncClient, task_app: FastAPI
) -> None:
    ids = await _create_at_once(client, 36)

    # Toggles move tasks both ways between the same rows at once, the PUTs across
    # priorities too: the triggers must lock the rows they change without deadlocking.
    responses = await asyncio.gather(
        *(client.patch(tasks_url(task_id=i), headers=auth()) for i in ids[:12]),
        *(client.patch(f"{tasks_url(task_id=i)}/complete", headers=auth()) for i in ids[12:24]),
        *(
            client.put(
                tasks_url(task_id=i),
                json={"title": "moved", "priority": PRIORITIES[n % 3], "completed": n % 2 == 1},
                headers=auth(),
            )
            for n, i in enumerate(ids[24:30])
        ),
        *(client.delete(tasks_url(task_id=i), headers=auth()) for i in ids[30:]),
        *(
            client.post(tasks_url(), json={"title": f"late{n}", "priority": p}, headers=auth())
            for n, p in enumerate(PRIORITIES * 2)
        ),
    )

    assert all(response.is_success for response in responses), [
        response.text for response in responses if not response.is_success
    ]
    assert (await _exact_totals(client, task_app))["all", None] == 36


async def test_counts_stay_exact_when_clearing_races_other_writes(
    client: httpx2.AsyncClient, task_app: FastAPI
) -> None:
    ids = await _create_at_once(client, 30)

    # Clearing moves every completed row's count at once while toggles and PUTs move tasks
    # into and out of those rows: no deadlock, and no count missed.
    responses = await asyncio.gather(
        client.delete(tasks_url(), params={"status": "completed"}, headers=auth()),
        *(client.patch(f"{tasks_url(task_id=i)}/complete", headers=auth()) for i in ids[:10]),
        *(
            client.put(
                tasks_url(task_id=i),
                json={"priority": PRIORITIES[n % 3], "completed": n % 2 == 1},
                headers=auth(),
            )
            for n, i in enumerate(ids[10:20])
        ),
        client.delete(tasks_url(), params={"status": "completed"}, headers=auth()),
        *(
            client.post(tasks_url(), json={"title": f"late{n}", "completed": True}, headers=auth())
            for n in range(4)
        ),
    )

    # A task the clearing deleted first is a 404 to a later toggle or PUT: that is all.
    assert all(response.is_success or response.status_code == 404 for response in responses), [
        response.text for response in responses if not response.is_success
    ]
    cleared = [r.json()["deleted"] for r in responses if r.request.method == "DELETE"]
    totals = await _exact_totals(client, task_app)
    assert totals["all", None] == 34 - sum(cleared)


async def test_the_migrations_count_tasks_that_existed_before_them(
    backend: Backend, tmp_path: Path
) -> None:
    settings = task_settings(Backend(backend.name, backend.database_url, tmp_path))
    database = create_database(
        settings.database_config(), schema=settings.task_db_schema, name="counts"
    )
    tasks = [
        ("ann", "high", True),
        ("ann", "high", False),
        ("ann", "high", True),
        ("ann", "low", True),
        ("ben", "medium", False),
    ]
    try:
        # Before the first counts, and before the counts per priority.
        await upgrade_database(database, MIGRATIONS_DIR, "0001")
        async with database.sessionmaker() as session:
            for user, priority, done in tasks[:2]:
                session.add(Task(user_id=user, title="t", priority=priority, completed=done))
            await session.commit()
        await upgrade_database(database, MIGRATIONS_DIR, "0003")
        async with database.sessionmaker() as session:
            for user, priority, done in tasks[2:]:
                session.add(Task(user_id=user, title="t", priority=priority, completed=done))
            await session.commit()

        await upgrade_database(database, MIGRATIONS_DIR)

        async with database.sessionmaker() as session:
            rows = (await session.exec(select(TaskCount))).all()
    finally:
        await database.dispose()
        if backend.database_url:
            await drop_schema(backend.database_url, settings.task_db_schema)
    assert sorted((row.user_id, row.priority, row.completed, row.count) for row in rows) == [
        ("ann", "high", False, 1),
        ("ann", "high", True, 2),
        ("ann", "low", True, 1),
        ("ben", "medium", False, 1),
    ]
