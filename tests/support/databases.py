"""Database helpers for tests: backends, throwaway schemas, emptying tables."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import SecretStr
from sqlalchemy import Connection, MetaData
from sqlalchemy.engine import make_url

from shared.db import Database
from shared.migrations import context_options, use_schema


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


async def empty_tables(database: Database, metadata: MetaData) -> None:
    """Delete every row of a service's tables, children first."""
    async with database.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            await connection.execute(table.delete())


async def schema_differences(database: Database, metadata: MetaData) -> list[object]:
    """What autogenerate would still change: empty when models and migrations agree."""

    def diff(connection: Connection) -> list[object]:
        use_schema(connection, database.schema)
        options = context_options(metadata, database.schema, connection.dialect.name)
        context = MigrationContext.configure(connection, opts=options)
        return list(compare_metadata(context, metadata))

    async with database.engine.begin() as connection:
        return await connection.run_sync(diff)


def rewrite_url(url: str, *, port: int | None = None, password: str | None = None) -> str:
    """The same database URL through another port, or with a password added."""
    parsed = make_url(url)
    if port is not None:
        parsed = parsed.set(host="127.0.0.1", port=port)
    if password is not None:
        parsed = parsed.set(password=password)
    return parsed.render_as_string(hide_password=False)
