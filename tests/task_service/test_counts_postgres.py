"""Kept task counts on PostgreSQL only: TRUNCATE (SQLite has none; its DELETE fires the row
triggers) and the recount_tasks() function operators run after writing without triggers."""

from __future__ import annotations

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlmodel import col, func, select

from shared.deps import service_state
from task_service.models import PRIORITIES, TaskCount
from tests.support.databases import Backend
from tests.task_service.conftest import create_task
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
