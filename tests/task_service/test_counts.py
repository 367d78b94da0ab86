"""X-Total-Count from the per-user counts the database keeps, which must never drift."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlmodel import delete

from shared.db import create_database
from shared.migrations import upgrade_database
from task_service.app import MIGRATIONS_DIR
from task_service.models import Task, TaskCount
from tests.support.databases import Backend, drop_schema
from tests.task_service.conftest import auth, create_task, task_settings, tasks_url


async def _totals(client: httpx2.AsyncClient, user_id: str = "alice") -> dict[str, int]:
    """Totals by status, from the counts (limit=1 forces the count path) and from COUNT(*)
    (a priority filter matching every task of these tests forces a real count)."""
    totals = {}
    for status in ("all", "pending", "completed"):
        kept = await client.get(
            tasks_url(user_id), params={"status": status, "limit": 1}, headers=auth(user_id)
        )
        counted = await client.get(
            tasks_url(user_id),
            params={"status": status, "limit": 1, "priority": "medium"},
            headers=auth(user_id),
        )
        assert kept.headers["x-total-count"] == counted.headers["x-total-count"], status
        totals[status] = int(kept.headers["x-total-count"])
    return totals


async def test_counts_follow_every_kind_of_write(client: httpx2.AsyncClient) -> None:
    ids = [(await create_task(client, title=f"t{n}"))["id"] for n in range(8)]
    assert await _totals(client) == {"all": 8, "pending": 8, "completed": 0}

    await client.patch(tasks_url(task_id=ids[0]), headers=auth())  # toggle, no body
    await client.patch(f"{tasks_url(task_id=ids[1])}/complete", headers=auth())
    await client.patch(tasks_url(task_id=ids[2]), json={"completed": True}, headers=auth())
    await client.put(
        tasks_url(task_id=ids[3]), json={"title": "x", "completed": True}, headers=auth()
    )
    # Changes that keep `completed` as it is must not move the counts.
    await client.patch(tasks_url(task_id=ids[3]), json={"completed": True}, headers=auth())
    await client.put(tasks_url(task_id=ids[4]), json={"title": "y"}, headers=auth())
    assert await _totals(client) == {"all": 8, "pending": 4, "completed": 4}

    await client.patch(f"{tasks_url(task_id=ids[0])}/complete", headers=auth())  # undone
    await client.delete(tasks_url(task_id=ids[1]), headers=auth())  # a completed one
    await client.delete(tasks_url(task_id=ids[5]), headers=auth())  # a pending one
    assert await _totals(client) == {"all": 6, "pending": 4, "completed": 2}


async def test_users_are_counted_apart(client: httpx2.AsyncClient) -> None:
    for _ in range(3):
        await create_task(client)
    await create_task(client, user_id="bob", completed=True)

    assert (await _totals(client))["all"] == 3
    assert await _totals(client, "bob") == {"all": 1, "pending": 0, "completed": 1}
    assert await _totals(client, "carol") == {"all": 0, "pending": 0, "completed": 0}


async def test_counts_stay_exact_under_concurrent_writes(client: httpx2.AsyncClient) -> None:
    created = await asyncio.gather(*(create_task(client, title=f"c{n}") for n in range(30)))
    ids = [task["id"] for task in created]

    await asyncio.gather(
        *(client.patch(f"{tasks_url(task_id=i)}/complete", headers=auth()) for i in ids[:20]),
        *(client.delete(tasks_url(task_id=i), headers=auth()) for i in ids[20:25]),
        *(create_task(client, title=f"late{n}") for n in range(5)),
    )

    assert await _totals(client) == {"all": 30, "pending": 10, "completed": 20}


async def test_a_missing_counts_row_falls_back_to_counting(
    client: httpx2.AsyncClient, task_app: FastAPI
) -> None:
    for n in range(3):
        await create_task(client, title=f"t{n}", completed=n == 0)
    async with task_app.state.database.sessionmaker() as session:
        await session.exec(delete(TaskCount))
        await session.commit()

    # limit=1 makes every page full, so the total cannot come from the page itself.
    assert await _totals(client) == {"all": 3, "pending": 2, "completed": 1}


async def test_truncate_empties_the_counts_too(
    client: httpx2.AsyncClient, task_app: FastAPI, backend: Backend
) -> None:
    if not backend.is_postgres:
        pytest.skip("SQLite has no TRUNCATE; its DELETE fires the row triggers")
    for _ in range(3):
        await create_task(client, completed=True)
    async with task_app.state.database.engine.begin() as connection:
        await connection.execute(text(f'TRUNCATE "{task_app.state.database.schema}".tasks'))

    await create_task(client)

    assert await _totals(client) == {"all": 1, "pending": 1, "completed": 0}


async def test_recount_repairs_counts_after_writes_without_triggers(
    client: httpx2.AsyncClient, task_app: FastAPI, backend: Backend
) -> None:
    if not backend.is_postgres:
        pytest.skip("recount_tasks() is a PostgreSQL function")
    schema = task_app.state.database.schema
    await create_task(client)
    async with task_app.state.database.engine.begin() as connection:
        await connection.execute(text(f'ALTER TABLE "{schema}".tasks DISABLE TRIGGER USER'))
        await connection.execute(
            text(
                f'INSERT INTO "{schema}".tasks (user_id, title, completed, priority, tags, '
                "created_at, updated_at) SELECT 'alice', 't', n % 2 = 0, 'medium', '[]', now(), "
                "now() FROM generate_series(1, 4) AS n"
            )
        )
        await connection.execute(text(f'ALTER TABLE "{schema}".tasks ENABLE TRIGGER USER'))
    async with task_app.state.database.sessionmaker() as session:
        stale = await session.get(TaskCount, "alice")
    assert stale is not None
    assert stale.total == 1, "the triggers were off: the counts missed the insert"

    async with task_app.state.database.engine.begin() as connection:
        await connection.execute(text(f'SELECT "{schema}".recount_tasks()'))

    assert await _totals(client) == {"all": 5, "pending": 3, "completed": 2}


async def test_the_migration_counts_tasks_that_existed_before_it(
    backend: Backend, tmp_path: Path
) -> None:
    settings = task_settings(Backend(backend.name, backend.database_url, tmp_path))
    database = create_database(settings, schema=settings.task_db_schema, name="counts")
    try:
        await upgrade_database(database, MIGRATIONS_DIR, "0001")
        async with database.sessionmaker() as session:
            for user, done in [("ann", True), ("ann", False), ("ann", True), ("ben", False)]:
                session.add(Task(user_id=user, title="t", completed=done))
            await session.commit()

        await upgrade_database(database, MIGRATIONS_DIR)

        async with database.sessionmaker() as session:
            ann = await session.get(TaskCount, "ann")
            ben = await session.get(TaskCount, "ben")
    finally:
        await database.dispose()
        if backend.database_url:
            await drop_schema(backend.database_url, settings.task_db_schema)
    assert ann is not None
    assert ben is not None
    assert (ann.total, ann.completed) == (3, 2)
    assert (ben.total, ben.completed) == (1, 0)
