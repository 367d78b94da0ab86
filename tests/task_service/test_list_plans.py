"""Every sort of the list reads one page through an index, without sorting the user's tasks.

The plans are those of the very statements the service sends, parameters included. On
PostgreSQL sorting is switched off for the EXPLAIN, so a sort shows up only when no index can
give the order; ANALYZE then shows how many rows the scan read. Each statement is explained
twice there: as the generic plan that the service's connections keep for a prepared statement
(shared.database_transport), and as the custom plan for its values that a statement gets
through a transaction pooler. Nothing here is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx2
import pytest
from asyncpg.connection import LoggedQuery
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.deps import service_state
from task_service.models import PRIORITIES, Task
from tests.task_service.conftest import ALICE, BOB, auth, insert_tasks, tasks_url

PAGE = 5
T0 = datetime(2030, 1, 1, tzinfo=UTC)


@contextlib.asynccontextmanager
async def sent_statements(engine: AsyncEngine) -> AsyncIterator[list[tuple[str, Any]]]:
    """Each statement sent to the database meanwhile, with its parameters as sent: those
    SQLAlchemy executes, and on PostgreSQL those asyncpg runs directly (Database.rows)."""
    sent: list[tuple[str, Any]] = []
    watched: list[asyncpg.Connection] = []

    def record(*args: Any) -> None:
        _connection, _cursor, statement, parameters, _context, _many = args
        sent.append((statement, parameters))

    def record_driver(query: LoggedQuery) -> None:
        sent.append((query.query, query.args))

    def watch(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        driver = record.driver_connection
        if isinstance(driver, asyncpg.Connection) and driver not in watched:
            driver.add_query_logger(record_driver)
            watched.append(driver)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    event.listen(engine.sync_engine, "checkout", watch)
    try:
        yield sent
        # asyncpg calls its query loggers soon after a statement, not during it.
        await asyncio.sleep(0)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
        event.remove(engine.sync_engine, "checkout", watch)
        for driver in watched:
            driver.remove_query_logger(record_driver)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _literal(value: Any) -> str:
    """`value` as a quoted literal, which takes the type of the parameter it is given for."""
    if value is None:
        return "NULL"
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text.replace("'", "''") + "'"


async def _postgres_plans(
    engine: AsyncEngine, statement: str, parameters: Any
) -> dict[str, list[str]]:
    """The generic and the custom plan of a statement, by kind."""
    return {
        kind: await _postgres_plan(engine, statement, parameters, generic=kind == "generic")
        for kind in ("generic", "custom")
    }


async def _postgres_plan(
    engine: AsyncEngine, statement: str, parameters: Any, *, generic: bool
) -> list[str]:
    """The plan's node types; each index scan also says which table it read and how many
    rows it returned (a page's kept total is a scan of task_counts of its own)."""
    async with engine.connect() as connection:
        await connection.exec_driver_sql("SET LOCAL enable_sort = off")
        if generic:
            # EXPLAIN with parameters plans for their values: the generic plan is that of a
            # prepared statement, executed with the values written out.
            await connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
            await connection.exec_driver_sql(f"PREPARE listed AS {statement}")
            values = ", ".join(_literal(value) for value in parameters)
            try:
                result = await connection.exec_driver_sql(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE listed({values})"
                )
            finally:
                # A prepared statement outlives the transaction: the pooled connection is
                # handed back without it.
                await connection.exec_driver_sql("DEALLOCATE listed")
        else:
            result = await connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
            )
        explained = result.scalar_one()
        await connection.rollback()
    plan = json.loads(explained) if isinstance(explained, str) else explained
    return [
        f"{node['Node Type']} on {node.get('Relation Name', node.get('Index Name'))}"
        f" rows={node['Actual Rows']}"
        if "Index" in node["Node Type"]
        else node["Node Type"]
        for node in _nodes(plan[0]["Plan"])
    ]


async def _sqlite_plan(engine: AsyncEngine, statement: str, parameters: Any) -> list[str]:
    async with engine.connect() as connection:
        result = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return [str(row[-1]) for row in result.all()]


@pytest.fixture
async def crowded(client: httpx2.AsyncClient, task_app: FastAPI) -> None:
    """Many more tasks of Alice than a page, every field varied, and some of Bob's."""
    await insert_tasks(
        task_app,
        *(
            Task(
                user_id=ALICE if n % 5 else BOB,
                title=f"{'Ää'[n % 2]}task {n * 7 % 60:02}",
                priority=PRIORITIES[n % len(PRIORITIES)],
                due_date=None if n % 4 == 0 else T0 + timedelta(days=n * 11 % 60),
                created_at=T0 + timedelta(hours=n),
                updated_at=T0 + timedelta(hours=n * 13 % 60),
                completed=n % 2 == 0,
            )
            for n in range(60)
        ),
    )


SORTS = ["created_at", "updated_at", "due_date", "priority", "title"]


ORDERINGS = [(sort, order) for sort in SORTS for order in ("asc", "desc")]


@pytest.fixture(params=ORDERINGS, ids=[f"{sort}-{order}" for sort, order in ORDERINGS])
def ordering(request: pytest.FixtureRequest, crowded: None) -> dict[str, str | int]:
    """Each sort, each way, of the crowded list."""
    sort, order = request.param
    return {"sort": sort, "order": order}


async def test_a_page_of_every_sort_is_read_in_index_order(
    client: httpx2.AsyncClient, task_app: FastAPI, ordering: dict[str, str | int]
) -> None:
    engine: AsyncEngine = service_state(task_app).database.engine
    params = {**ordering, "limit": PAGE}

    async with sent_statements(engine) as sent:
        response = await client.get(tasks_url(), params=params, headers=auth())
    assert response.status_code == 200
    assert len(response.json()) == PAGE
    ((statement, parameters),) = [(s, p) for s, p in sent if "ORDER BY" in s]

    if service_state(task_app).database.kind == "postgresql":
        plans = await _postgres_plans(engine, statement, parameters)
        for plan in plans.values():
            assert f"Index Scan on tasks rows={PAGE}" in plan, plans
    else:
        plans = {"sqlite": await _sqlite_plan(engine, statement, parameters)}
        assert any("USING INDEX" in step for step in plans["sqlite"]), plans
    for plan in plans.values():
        assert not any("Sort" in step or "TEMP B-TREE" in step for step in plan), plans


DEEP = 35  # tasks before the deep page: seven pages of PAGE


async def test_a_deep_cursor_page_reads_no_more_rows_than_the_first(
    client: httpx2.AsyncClient, task_app: FastAPI, ordering: dict[str, str | int]
) -> None:
    engine: AsyncEngine = service_state(task_app).database.engine
    skipped = await client.get(tasks_url(), params={**ordering, "limit": DEEP}, headers=auth())
    cursor = skipped.headers["x-next-cursor"]

    async with sent_statements(engine) as sent:
        response = await client.get(
            tasks_url(), params={**ordering, "limit": PAGE, "cursor": cursor}, headers=auth()
        )
    assert response.status_code == 200
    assert len(response.json()) == PAGE
    # Past the last due date a page goes on with the tasks without one: two statements.
    pages = [(s, p) for s, p in sent if "ORDER BY" in s]
    assert 1 <= len(pages) <= (2 if ordering["sort"] == "due_date" else 1)

    for statement, parameters in pages:
        if service_state(task_app).database.kind == "postgresql":
            plans = await _postgres_plans(engine, statement, parameters)
            for plan in plans.values():
                # Each scan starts at the cursor: it reads the page, not the DEEP rows before.
                scans = [s for s in plan if s.startswith("Index") and " on tasks " in s]
                assert len(scans) == 1, plans
                assert int(scans[0].rsplit("=", 1)[1]) <= PAGE, plans
        else:
            plan = await _sqlite_plan(engine, statement, parameters)
            # The index is searched from the cursor's key on (or from the first task without a
            # due date), not scanned from the user's first row.
            assert any("USING INDEX" in step and "(user_id=? AND " in step for step in plan), plan
            plans = {"sqlite": plan}
        for plan in plans.values():
            assert not any("Sort" in step or "TEMP B-TREE" in step for step in plan), plans
