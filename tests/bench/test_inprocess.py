"""The in-process measurement runs each operation against the real app and database."""

from __future__ import annotations

import os

import asyncpg
import pytest

from bench import inprocess

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("operation", ["list", "create", "toggle"])
async def test_each_operation_is_measured_and_its_schema_dropped(
    postgres_url: str, operation: str
) -> None:
    environment = dict(os.environ)

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
    assert dict(os.environ) == environment  # the settings are passed, not set
