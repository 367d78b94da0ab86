"""Fixtures every suite uses: a hermetic environment and the database backends."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis
import redis.asyncio
from sqlalchemy.engine import make_url

from auth_service.settings import AuthSettings
from gateway.settings import GatewaySettings
from shared.settings import CommonSettings, ServiceSettings
from task_service.settings import TaskSettings
from tests.support.databases import Backend, drop_schema, unique_schema
from tests.support.pg_cluster import HostedPostgres, missing_tools
from tests.support.tcp_proxy import TcpProxy

IN_CI = os.environ.get("CI", "").lower() == "true"

# Every variable a settings class reads. Tests build settings explicitly, so none of these may
# leak in from the developer's shell.
_SETTINGS_CLASSES: list[type[CommonSettings]] = [
    CommonSettings,
    ServiceSettings,
    AuthSettings,
    TaskSettings,
    GatewaySettings,
]
_SETTINGS_VARIABLES = {name.upper() for cls in _SETTINGS_CLASSES for name in cls.model_fields}


@pytest.fixture(autouse=True, scope="session")
def _hermetic_environment() -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in _SETTINGS_VARIABLES if name in os.environ}
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session")
async def postgres_url() -> str:
    """TEST_DATABASE_URL, checked reachable. Skipped without it, but never on CI."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        if IN_CI:
            pytest.fail("CI=true but TEST_DATABASE_URL is not set: PostgreSQL tests must run")
        pytest.skip("TEST_DATABASE_URL is not set; PostgreSQL half of the suite skipped")
    try:
        connection = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL at TEST_DATABASE_URL is unreachable: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    await connection.close()
    return url


@pytest.fixture(scope="session")
async def redis_url() -> str:
    """TEST_REDIS_URL, checked reachable. Skipped without it, but never on CI."""
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        if IN_CI:
            pytest.fail("CI=true but TEST_REDIS_URL is not set: Redis tests must run")
        pytest.skip("TEST_REDIS_URL is not set; Redis tests skipped")
    client = redis.asyncio.from_url(url, socket_connect_timeout=5)
    try:
        await client.ping()
    except redis.RedisError as exc:
        message = f"Redis at TEST_REDIS_URL is unreachable: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    finally:
        await client.aclose()
    return url


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    """Each suite that uses this runs once on SQLite and once on PostgreSQL."""
    data_dir = tmp_path_factory.mktemp("data")
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        return Backend("postgres", url, data_dir)
    return Backend("sqlite", None, data_dir)


@pytest.fixture
async def pg_schema(postgres_url: str) -> AsyncIterator[str]:
    """A fresh schema name on the test PostgreSQL, dropped afterwards."""
    schema = unique_schema("s")
    yield schema
    await drop_schema(postgres_url, schema)


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    """A cuttable loopback proxy in front of the test PostgreSQL, to stage outages."""
    target = make_url(postgres_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.cut()


@pytest.fixture(scope="session")
def hosted_postgres() -> Iterator[HostedPostgres]:
    """The suite's own TLS-only, SCRAM-only PostgreSQL with PgBouncer (transaction mode) in
    front, as hosted databases run them. Skipped without the tools, but never on CI."""
    if missing := missing_tools():
        message = f"{', '.join(missing)} not installed: hosted-database tests cannot run"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    cluster = HostedPostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
