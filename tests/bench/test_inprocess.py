"""The in-process measurement runs each operation against the real app and database."""

from __future__ import annotations

import asyncpg
import pytest

from bench import inprocess

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("operation", ["list", "create", "toggle"])
async def test_each_operation_is_measured_and_its_schema_dropped(
    postgres_url: str, operation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DATABASE_URL", "SECRET_KEY", "TASK_DB_SCHEMA", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)  # restored after the test

    cpu_ms, calls = await inprocess.measure(operation, 25, postgres_url)

    assert cpu_ms > 0
    assert calls > 100  # a request goes through the whole app
    connection = await asyncpg.connect(postgres_url)
    try:
        left = await connection.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'bench_inprocess_%'"
        )
    finally:
        await connection.close()
    assert left == 0
