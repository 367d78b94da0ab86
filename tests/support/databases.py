"""Database helpers for tests: backends, throwaway schemas, emptying tables."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import SecretStr
from sqlalchemy import Connection, MetaData
from sqlalchemy.engine import make_url

from shared.db import Database
from shared.migrations import _lock_key, alembic_config, context_options, use_schema


@dataclass(frozen=True)
class Backend:
    """Where a service under test keeps its data."""

    name: str
    database_url: str | None
    data_dir: Path

    @property
    def is_postgres(self) -> bool:
        return self.name == "postgres"

    @property
    def secret_url(self) -> SecretStr | None:
        """DATABASE_URL as settings take it: None selects the SQLite default."""
        return SecretStr(self.database_url) if self.database_url else None


def unique_schema(prefix: str) -> str:
    """A schema name no other test run uses."""
    return f"{prefix}_t{uuid.uuid4().hex[:10]}"


async def drop_schema(url: str, schema: str) -> None:
    connection = await asyncpg.connect(url, timeout=5)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


async def check_upgrades_wait_for_the_lock(
    url: str, schema: str, upgrades: Callable[[], Awaitable[Any]], head: str, *, held: float
) -> None:
    """Hold `schema`'s migration lock, as another instance mid-upgrade would, for `held`
    seconds: the `upgrades` started meanwhile must wait for it, then bring it to `head`."""
    holder = await asyncpg.connect(url)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(schema))

        waiting = asyncio.ensure_future(upgrades())
        await asyncio.sleep(held)
        assert not waiting.done(), "upgrades must wait for the lock holder"

        await transaction.commit()
        await asyncio.wait_for(waiting, timeout=60)
        rows = await holder.fetch(f'SELECT version_num FROM "{schema}".alembic_version')
        assert [row["version_num"] for row in rows] == [head]
    finally:
        await holder.close()


async def downgrade_database(database: Database, migrations_dir: Path, revision: str) -> None:
    """Take a service's schema back to `revision`, as `alembic downgrade` would."""
    config = alembic_config(migrations_dir, database.schema)

    def downgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with database.engine.connect() as connection:
        await connection.run_sync(downgrade)
        await connection.commit()


async def empty_tables(database: Database, metadata: MetaData) -> None:
    """Delete every row of a service's tables, children first."""
    async with database.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            await connection.execute(table.delete())


async def schema_differences(database: Database, metadata: MetaData) -> list[object]:
    """What autogenerate would still change: empty when models and migrations agree.

    SQLite's reflection skips indexes on expressions, so Alembic cannot compare them there
    (and warns): on SQLite such indexes are only checked to exist, by name.
    """

    def diff(connection: Connection) -> list[object]:
        use_schema(connection, database.schema)
        options = context_options(metadata, database.schema, connection.dialect.name)
        context = MigrationContext.configure(connection, opts=options)
        if connection.dialect.name != "sqlite":
            return list(compare_metadata(context, metadata))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_UNREFLECTED_INDEX)
            differences: list[object] = list(compare_metadata(context, metadata))
        return differences + _missing_sqlite_indexes(connection, metadata, options)

    async with database.engine.begin() as connection:
        return await connection.run_sync(diff)


_UNREFLECTED_INDEX = ".*expression-based index"


def _missing_sqlite_indexes(
    connection: Connection, metadata: MetaData, options: dict[str, Any]
) -> list[object]:
    include = options["include_object"]
    present = set(
        connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'")
        .scalars()
        .all()
    )
    return [
        ("missing_index", index.name)
        for table in metadata.tables.values()
        for index in table.indexes
        if index.name not in present and include(index, index.name, "index", False, None)
    ]


def rewrite_url(url: str, *, port: int | None = None, password: str | None = None) -> str:
    """The same database URL through another port, or with a password added."""
    parsed = make_url(url)
    if port is not None:
        parsed = parsed.set(host="127.0.0.1", port=port)
    if password is not None:
        parsed = parsed.set(password=password)
    return parsed.render_as_string(hide_password=False)
