"""The engine each service gets: its options for Neon, and what reaches the logs when a
query fails on a real database."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr
from sqlalchemy import Float, Integer, String, bindparam, cast, func, select, text
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.requests import Request

from shared import database_transport
from shared.database_tls import Tls
from shared.db import PING_AFTER_IDLE_SECONDS, Database, create_database
from shared.errors import database_error
from shared.settings import ServiceSettings


@pytest.mark.postgres
async def test_a_failing_query_logs_its_statement_but_never_its_values(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ServiceSettings(
        _env_file=None, database_url=SecretStr(postgres_url), data_dir=tmp_path
    )
    database = create_database(settings.database_config(), schema="public", name="check")
    try:
        async with database.engine.connect() as connection:
            with pytest.raises(DBAPIError) as failure:
                await connection.execute(
                    text("SELECT CAST(:value AS integer)"), {"value": "hash-of-a-password"}
                )
    finally:
        await database.dispose()
    request = Request({"type": "http", "method": "POST", "path": "/x", "headers": []})

    response = await database_error(request, failure.value)

    assert response.status_code == 500
    assert json.loads(bytes(response.body)) == {
        "detail": "Internal Server Error",
        "code": "internal_error",
    }
    assert "SELECT CAST($1 AS integer)" in caplog.text
    assert "hash-of-a-password" not in caplog.text


@pytest.fixture
async def one_connection(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Database, list[None]]]:
    """A service's engine on the test database with a pool of one connection, and the pings
    the pool sends meanwhile."""
    pings: list[None] = []
    adapted = asyncpg_dialect.AsyncAdapt_asyncpg_connection
    ping: Any = adapted.ping

    def counted(self: Any) -> None:
        pings.append(None)
        ping(self)

    monkeypatch.setattr(adapted, "ping", counted)
    settings = ServiceSettings(
        _env_file=None, database_url=SecretStr(postgres_url), data_dir=tmp_path, db_pool_size=1
    )
    database = create_database(settings.database_config(), schema="public", name="check")
    yield database, pings
    await database.dispose()


@pytest.mark.postgres
async def test_an_idle_connection_the_server_dropped_is_replaced_before_use(
    one_connection: tuple[Database, list[None]], postgres_url: str
) -> None:
    database, pings = one_connection
    backend_pid = text("SELECT pg_backend_pid()")
    async with database.engine.connect() as connection:
        first = (await connection.execute(backend_pid)).scalar_one()
    killer = await asyncpg.connect(postgres_url)
    try:
        assert await killer.fetchval("SELECT pg_terminate_backend($1)", first)
    finally:
        await killer.close()
    await asyncio.sleep(PING_AFTER_IDLE_SECONDS + 0.2)

    async with database.engine.connect() as connection:
        second = (await connection.execute(backend_pid)).scalar_one()

    assert second != first
    assert len(pings) == 1


@pytest.mark.postgres
async def test_a_connection_in_steady_use_is_not_pinged(
    one_connection: tuple[Database, list[None]],
) -> None:
    database, pings = one_connection
    for _ in range(5):
        async with database.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    assert pings == []


async def _plan_cache_mode(url: str, tmp_path: Path) -> str:
    settings = ServiceSettings(_env_file=None, database_url=SecretStr(url), data_dir=tmp_path)
    database = create_database(settings.database_config(), schema="public", name="check")
    try:
        async with database.engine.connect() as connection:
            return str((await connection.execute(text("SHOW plan_cache_mode"))).scalar_one())
    finally:
        await database.dispose()


@pytest.mark.postgres
async def test_a_direct_connection_keeps_one_plan_per_prepared_statement(
    postgres_url: str, tmp_path: Path
) -> None:
    # Planned anew at each execution, a list cost PostgreSQL twice the CPU (bench/history.md).
    assert await _plan_cache_mode(postgres_url, tmp_path) == "force_generic_plan"


@pytest.mark.postgres
async def test_a_plan_cache_mode_in_the_url_options_is_kept(
    postgres_url: str, tmp_path: Path
) -> None:
    separator = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{separator}options=-c%20plan_cache_mode%3Dforce_custom_plan"

    assert await _plan_cache_mode(url, tmp_path) == "force_custom_plan"


# A statement of the kind Database.rows takes: built once, its values bound per call.
_PID_AND_VALUE = select(func.pg_backend_pid(), cast(bindparam("value", type_=String), Integer))


@pytest.mark.postgres
async def test_rows_runs_a_statement_and_keeps_its_values_out_of_the_log(
    one_connection: tuple[Database, list[None]], caplog: pytest.LogCaptureFixture
) -> None:
    database, _pings = one_connection
    ((_pid, value),) = await database.rows(_PID_AND_VALUE, {"value": "7"})
    assert value == 7
    secret = "hash-of-a-password"
    with pytest.raises(DBAPIError) as failure:
        await database.rows(_PID_AND_VALUE, {"value": secret})
    request = Request({"type": "http", "method": "POST", "path": "/x", "headers": []})

    response = await database_error(request, failure.value)

    assert response.status_code == 500
    assert "CAST($1::VARCHAR AS INTEGER)" in caplog.text
    assert secret not in caplog.text
    with pytest.raises(KeyError):  # a value the statement needs is never taken as NULL
        await database.rows(_PID_AND_VALUE, {})


@pytest.mark.postgres
async def test_rows_on_a_connection_the_server_dropped_is_a_503_and_the_next_call_reconnects(
    one_connection: tuple[Database, list[None]], postgres_url: str
) -> None:
    database, pings = one_connection
    ((first, _),) = await database.rows(_PID_AND_VALUE, {"value": "1"})
    killer = await asyncpg.connect(postgres_url)
    try:
        assert await killer.fetchval("SELECT pg_terminate_backend($1)", first)
    finally:
        await killer.close()

    # Used a moment ago, so not pinged: the statement meets the dead connection.
    with pytest.raises(DBAPIError) as failure:
        await database.rows(_PID_AND_VALUE, {"value": "2"})
    assert failure.value.connection_invalidated
    request = Request({"type": "http", "method": "GET", "path": "/x", "headers": []})
    assert (await database_error(request, failure.value)).status_code == 503

    ((second, value),) = await database.rows(_PID_AND_VALUE, {"value": "3"})
    assert (second, value) != (first, 3)
    assert second != first
    assert pings == []


@pytest.mark.postgres
async def test_rows_cancelled_mid_statement_leaves_no_busy_connection_in_the_pool(
    one_connection: tuple[Database, list[None]],
) -> None:
    database, _pings = one_connection
    sleeping = asyncio.create_task(
        database.rows(select(func.pg_sleep(bindparam("seconds", type_=Integer))), {"seconds": 5})
    )
    await asyncio.sleep(0.3)  # the statement is running on the pool's only connection
    sleeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeping

    ((_pid, value),) = await asyncio.wait_for(
        database.rows(_PID_AND_VALUE, {"value": "4"}), timeout=3
    )
    assert value == 4


@pytest.mark.postgres
async def test_rows_waiting_for_a_busy_pool_are_served_in_the_order_they_came(
    one_connection: tuple[Database, list[None]],
) -> None:
    database, _pings = one_connection
    served: list[str] = []

    async def run(name: str, seconds: float = 0) -> None:
        await database.rows(_SLEEP, {"seconds": seconds})
        served.append(name)

    async def holder() -> None:
        await run("holder", 0.3)
        # The connection is back in the pool and the first waiter woken, but not yet run:
        # asking again at once must not take it from under them.
        await run("holder again")

    holding = asyncio.create_task(holder())
    await asyncio.sleep(0.1)
    waiters = [asyncio.create_task(run(name)) for name in ("first", "second", "third")]
    await asyncio.gather(holding, *waiters)

    assert served == ["holder", "first", "second", "third", "holder again"]


@pytest.mark.postgres
async def test_rows_waiting_longer_than_the_command_timeout_for_the_pool_is_a_503(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = ServiceSettings(
        _env_file=None,
        database_url=SecretStr(postgres_url),
        data_dir=tmp_path,
        db_pool_size=1,
        db_command_timeout=0.3,
    )
    database = create_database(settings.database_config(), schema="public", name="check")
    try:
        holding = asyncio.create_task(database.rows(_SLEEP, {"seconds": 0.25}))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(database.rows(_SLEEP, {"seconds": 0.25}))
        await asyncio.sleep(0.05)
        with pytest.raises(PoolTimeoutError) as failure:
            # Behind two statements of 0.25 s: its turn would come after 0.45 s.
            await database.rows(_SLEEP, {"seconds": 0})
        await asyncio.gather(holding, queued)
    finally:
        await database.dispose()
    request = Request({"type": "http", "method": "GET", "path": "/x", "headers": []})
    assert (await database_error(request, failure.value)).status_code == 503


_SLEEP = select(func.pg_sleep(bindparam("seconds", type_=Float)))


NEON_POOLER = (
    "postgresql://alex:AbC123dEf@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/dbname"
    "?sslmode=require&channel_binding=require"
)


class _InterceptedError(Exception):
    """Stops a connection attempt once the driver's arguments are known."""


async def _driver_arguments(database: Database, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the engine would hand asyncpg.connect(), without reaching the server."""
    captured: dict[str, Any] = {}

    async def intercept(**arguments: Any) -> None:
        captured.update(arguments)
        raise _InterceptedError

    monkeypatch.setattr(asyncpg, "connect", intercept)
    monkeypatch.setattr(database_transport, "tls_for", lambda _url: _TLS_FOR_TESTS)
    with pytest.raises(_InterceptedError):
        async with database.engine.connect():
            pass
    return captured


_TLS_FOR_TESTS = Tls("require", "require-context", ssl.create_default_context(), "none", None)


def _postgres_database(url: str, tmp_path: Path) -> Database:
    settings = ServiceSettings(_env_file=None, database_url=SecretStr(url), data_dir=tmp_path)
    return create_database(settings.database_config(), schema="auth", name="auth")


async def test_neon_pooler_gets_no_statement_caches_and_timeouts_for_cold_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = _postgres_database(NEON_POOLER + "&sslrootcert=system", tmp_path)
    try:
        arguments = await _driver_arguments(database, monkeypatch)
        pool: Any = database.engine.pool
    finally:
        await database.dispose()

    # PgBouncer in transaction mode cannot keep prepared statements across transactions.
    assert arguments["statement_cache_size"] == 0
    assert database.pooler == "transaction"
    assert database.connector is not None
    name = database.connector.statement_name
    assert name() != name()
    assert arguments["ssl"] == "require-context"
    assert arguments["host"] == "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech"
    # A new connection may wait out a compute waking up; a query or a busy pool may not.
    assert arguments["timeout"] == 10
    assert arguments["command_timeout"] == 5
    assert pool.timeout() == 5
    # Connections are renewed before Neon's ~5 minute idle suspend; an idle one is pinged
    # before use (test_an_idle_connection_the_server_dropped_is_replaced_before_use).
    assert 0 < pool._recycle < 300


async def test_a_direct_postgres_host_keeps_asyncpg_statement_caching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = _postgres_database(
        NEON_POOLER.replace("-pooler", "") + "&sslrootcert=system", tmp_path
    )
    try:
        arguments = await _driver_arguments(database, monkeypatch)
    finally:
        await database.dispose()

    assert "statement_cache_size" not in arguments
    assert database.pooler == "none"
    assert arguments["timeout"] == 10
