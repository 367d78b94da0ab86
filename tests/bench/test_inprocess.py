"""The in-process measurement runs each operation against the real app and database, or
upstream."""

from __future__ import annotations

import os

import asyncpg
import pytest

from bench import inprocess


@pytest.mark.postgres
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


async def test_the_gateway_is_measured_proxying_the_static_upstream() -> None:
    cpu_ms, calls = await inprocess.measure("proxy", 25, "unused")

    assert cpu_ms > 0
    assert calls > 100  # a request goes through the gateway's middleware and client
