"""A transaction pooler (PgBouncer, as Neon's `-pooler` endpoints and Supavisor run it)
reached where its name cannot give it away: by IP address, with DB_POOLER set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Integer, String, bindparam, cast, select, text
from sqlalchemy.exc import DBAPIError

from shared.database_url import DatabaseConfig, PoolerMode, parse_database_url
from shared.db import Database, create_database
from shared.migrations import upgrade_database
from tests.support.databases import unique_schema
from tests.support.pg_cluster import HostedPostgres

TASK_MIGRATIONS = Path(__file__).resolve().parents[2] / "task_service" / "migrations"


@pytest.fixture
async def pooled(
    hosted_postgres: HostedPostgres, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Database]:
    pooler: PoolerMode = request.param
    url = hosted_postgres.url(host="127.0.0.1", port=hosted_postgres.pooler_port, sslmode="require")
    config = DatabaseConfig(parse_database_url(url), data_dir=tmp_path, pool_size=6, pooler=pooler)
    database = create_database(config, schema=unique_schema("pool"), name="tasks")
    yield database
    await database.dispose()


async def _many_transactions(database: Database) -> list[BaseException]:
    """Parameterised statements from several connections, one transaction each, so the
    pooler runs consecutive ones on different server connections. Returns the failures
    (every worker runs to its end, so none holds a connection past the test)."""

    async def worker(number: int) -> None:
        for step in range(8):
            async with database.engine.connect() as connection:
                value = await connection.scalar(
                    text("SELECT CAST(:value AS integer) + 1"), {"value": number * 100 + step}
                )
                await connection.commit()
            assert value == number * 100 + step + 1

    results = await asyncio.gather(*(worker(number) for number in range(6)), return_exceptions=True)
    return [result for result in results if isinstance(result, BaseException)]


@pytest.mark.parametrize("pooled", ["transaction"], indirect=True)
async def test_db_pooler_transaction_works_through_a_pooler_reached_by_ip(
    pooled: Database,
) -> None:
    assert pooled.pooler == "transaction"

    # Migrations take their advisory lock per transaction, which a pooler keeps.
    await upgrade_database(pooled, TASK_MIGRATIONS)
    assert await _many_transactions(pooled) == []
    await upgrade_database(pooled, TASK_MIGRATIONS)


@pytest.mark.parametrize("pooled", ["transaction"], indirect=True)
async def test_connections_through_a_transaction_pooler_leave_plan_cache_mode_alone(
    pooled: Database,
) -> None:
    # A session's setting would stay with a server connection other clients share.
    async with pooled.engine.connect() as connection:
        mode = (await connection.execute(text("SHOW plan_cache_mode"))).scalar_one()

    assert mode == "auto"


# Built once, as Database.rows wants its statements.
_PLUS_ONE = select(cast(bindparam("value", type_=String), Integer) + 1)


@pytest.mark.parametrize("pooled", ["transaction"], indirect=True)
async def test_rows_works_through_a_transaction_pooler(pooled: Database) -> None:
    """Database.rows sends statements with asyncpg itself, outside SQLAlchemy's statement
    handling: it must get by with what the pooler allows too (without DB_POOLER it fails
    with "prepared statement ... does not exist", as the test below shows for SQLAlchemy)."""

    async def worker(number: int) -> None:
        for step in range(8):
            ((value,),) = await pooled.rows(_PLUS_ONE, {"value": str(number * 100 + step)})
            assert value == number * 100 + step + 1

    results = await asyncio.gather(*(worker(number) for number in range(6)), return_exceptions=True)
    assert [result for result in results if isinstance(result, BaseException)] == []


@pytest.mark.parametrize("pooled", ["auto"], indirect=True)
async def test_a_pooler_by_ip_is_not_recognised_so_prepared_statements_break(
    pooled: Database,
) -> None:
    """Why DB_POOLER exists: what happens when nobody says a pooler is there."""
    assert pooled.pooler == "none"
    statement = text("SELECT CAST(:value AS integer) + 1")

    async with pooled.engine.connect() as first, pooled.engine.connect() as second:
        assert await first.scalar(statement, {"value": 1}) == 2  # prepared on a server
        await first.commit()
        # Another client's open transaction holds that server connection now, so the
        # pooler runs the next transaction of the first on its other one.
        await second.execute(text("SELECT 1"))
        with pytest.raises(DBAPIError) as failure:
            await first.scalar(statement, {"value": 2})
        await second.rollback()

    assert "prepared statement" in str(failure.value)


@pytest.mark.parametrize(
    ("url", "mode"),
    [
        ("postgresql://u:p@ep-x-123-pooler.us-east-2.aws.neon.tech/db", "transaction"),
        ("postgresql://u:p@ep-x-123.us-east-2.aws.neon.tech/db", "none"),
        ("postgresql://u:p@aws-0-eu-west-1.pooler.supabase.com:6543/postgres", "transaction"),
        ("postgresql://u:p@aws-0-eu-west-1.pooler.supabase.com:5432/postgres", "transaction"),
        ("postgresql://u:p@db.internal:6543/app", "transaction"),
        ("postgresql://u:p@10.0.0.5:5432/app", "none"),
    ],
)
def test_auto_recognises_neon_and_supavisor_poolers(url: str, mode: str) -> None:
    assert parse_database_url(url).pooler_mode("auto") == mode


@pytest.mark.parametrize("setting", ["transaction", "session", "none"])
def test_db_pooler_overrides_the_guess(setting: PoolerMode) -> None:
    url = parse_database_url("postgresql://u:p@ep-x-123-pooler.us-east-2.aws.neon.tech/db")

    assert url.pooler_mode(setting) == setting
