"""The database check behind `GET /health`: one query per interval however many callers,
and an outage seen at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import event, text

from shared.db import Database, create_database, is_database_unavailable
from shared.health import DatabaseCheck
from shared.settings import ServiceSettings
from tests.support.databases import rewrite_url
from tests.support.tcp_proxy import TcpProxy


def _count_queries(database: Database) -> list[str]:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    return statements


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    database = create_database(
        ServiceSettings(_env_file=None, data_dir=tmp_path).database_config(),
        schema="check",
        name="check",
    )
    yield database
    await database.dispose()


async def test_callers_within_the_interval_share_one_query(sqlite_database: Database) -> None:
    queries = _count_queries(sqlite_database)
    check = DatabaseCheck(sqlite_database, kept_seconds=60)

    answers = await asyncio.gather(*(check.healthy() for _ in range(20)))
    again = await check.healthy()

    assert answers == [True] * 20
    assert again is True
    assert queries == ["SELECT 1"]


async def test_an_answer_is_kept_only_for_the_interval(sqlite_database: Database) -> None:
    queries = _count_queries(sqlite_database)
    check = DatabaseCheck(sqlite_database, kept_seconds=0.2)

    assert await check.healthy()
    await asyncio.sleep(0.3)
    assert await check.healthy()

    assert queries == ["SELECT 1", "SELECT 1"]


@pytest.mark.postgres
async def test_a_database_error_anywhere_forgets_the_answer_and_failures_are_not_kept(
    proxy: TcpProxy, postgres_url: str, tmp_path: Path
) -> None:
    settings = ServiceSettings(
        _env_file=None,
        database_url=SecretStr(rewrite_url(postgres_url, port=proxy.port)),
        data_dir=tmp_path,
        db_connect_timeout=2.0,
    )
    database = create_database(settings.database_config(), schema="public", name="check")
    check = DatabaseCheck(database, kept_seconds=600)
    try:
        assert await check.healthy()

        await proxy.cut()
        # A request's query fails: the kept answer must not hide the outage from /health.
        with pytest.raises(Exception) as failure:  # noqa: PT011 (asyncpg raises it unwrapped)
            async with database.engine.connect() as connection:
                await connection.execute(text("SELECT 2"))
        assert is_database_unavailable(failure.value)
        started = time.monotonic()
        during = await asyncio.gather(*(check.healthy() for _ in range(5)))
        elapsed = time.monotonic() - started

        await proxy.restore()
        after = await check.healthy()
    finally:
        await database.dispose()

    assert during == [False] * 5
    assert elapsed < 5, "callers share one bounded query"
    assert after is True, "a failure is asked again, not kept"
