"""Kept task counts on PostgreSQL only: TRUNCATE (SQLite has none; its DELETE fires the row
triggers) and the recount_tasks() function operators run after writing without triggers."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlmodel import col, func, select

from shared.deps import service_state
from task_service.models import PRIORITIES, TaskCount
from tests.support.databases import Backend
from tests.task_service.conftest import auth, create_task, tasks_url
from tests.task_service.test_counts import _exact_totals

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def backend(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    """This module's suite runs on PostgreSQL alone."""
    return Backend("postgres", postgres_url, tmp_path_factory.mktemp("data"))


async def test_truncate_then_recount_leaves_exact_counts(
    client: httpx2.AsyncClient, task_app: FastAPI
) -> None:
    schema = service_state(task_app).database.schema
    for priority in PRIORITIES:
        await create_task(client, priority=priority, completed=True)
    async with service_state(task_app).database.engine.begin() as connection:
        await connection.execute(text(f'TRUNCATE "{schema}".tasks'))

    await create_task(client, priority="low")
    await create_task(client, priority="low")
    assert (await _exact_totals(client, task_app))["all", None] == 2

    async with service_state(task_app).database.engine.begin() as connection:
        await connection.execute(text(f'SELECT "{schema}".recount_tasks()'))

    assert (await _exact_totals(client, task_app))["pending", "low"] == 2


async def test_recount_repairs_counts_after_writes_without_triggers(
    client: httpx2.AsyncClient, task_app: FastAPI
) -> None:
    schema = service_state(task_app).database.schema
    await create_task(client, priority="high")
    async with service_state(task_app).database.engine.begin() as connection:
        await connection.execute(text(f'ALTER TABLE "{schema}".tasks DISABLE TRIGGER USER'))
        await connection.execute(
            text(
                f'INSERT INTO "{schema}".tasks (user_id, title, completed, priority, tags, '
                "created_at, updated_at) SELECT 'alice', 't', n % 2 = 0, "
                "(ARRAY['low', 'medium', 'high'])[n % 3 + 1], '[]', now(), now() "
                "FROM generate_series(1, 12) AS n"
            )
        )
        await connection.execute(text(f'ALTER TABLE "{schema}".tasks ENABLE TRIGGER USER'))
    async with service_state(task_app).database.sessionmaker() as session:
        stale = (await session.exec(select(func.sum(col(TaskCount.count))))).one()
    assert stale == 1, "the triggers were off: the counts missed the insert"

    async with service_state(task_app).database.engine.begin() as connection:
        await connection.execute(text(f'SELECT "{schema}".recount_tasks()'))

    # Read back without a real count to fall back on: the rows alone must be right.
    async with service_state(task_app).database.sessionmaker() as session:
        rows = (await session.exec(select(TaskCount))).all()
    assert {(row.priority, row.completed): row.count for row in rows} == {
        (priority, completed): 2 + (priority == "high" and not completed)
        for priority in PRIORITIES
        for completed in (False, True)
    }
    assert (await _exact_totals(client, task_app))["all", None] == 13


@pytest.mark.parametrize("priorities", [("low", "medium"), ("medium", "low")])
async def test_clearing_locks_the_counts_in_key_order(
    client: httpx2.AsyncClient, task_app: FastAPI, postgres_url: str, priorities: list[str]
) -> None:
    # Whichever task the delete meets first, it must not hold the "medium" count row while
    # it waits for the "low" one, which comes first in key order: a writer holding "low"
    # and waiting for "medium" (as count_tasks() locks them) would then deadlock with it.
    for priority in priorities:
        await create_task(client, title=priority, priority=priority, completed=True)
    settings = {"search_path": service_state(task_app).database.schema}
    holder = await asyncpg.connect(postgres_url, server_settings=settings)
    probe = await asyncpg.connect(postgres_url, server_settings=settings)
    try:
        held = holder.transaction()
        await held.start()
        await holder.execute(
            "SELECT 1 FROM task_counts WHERE priority = 'low' AND completed FOR UPDATE"
        )
        clearing = asyncio.create_task(
            client.delete(tasks_url(), params={"status": "completed"}, headers=auth())
        )
        await _until_waiting(probe)

        async with probe.transaction():
            free = await probe.fetch(
                "SELECT 1 FROM task_counts WHERE priority = 'medium' AND completed "
                "FOR UPDATE NOWAIT"
            )
        assert len(free) == 1
        await held.rollback()
        response = await clearing
    finally:
        await holder.close()
        await probe.close()

    assert response.json() == {"deleted": 2}
    assert (await _exact_totals(client, task_app))["completed", None] == 0


async def _until_waiting(probe: asyncpg.Connection) -> None:
    """Until some session of this database waits for a lock."""
    for _ in range(200):
        waiting = await probe.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query LIKE 'DELETE FROM %'"
        )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the clearing never waited for the held count row")
