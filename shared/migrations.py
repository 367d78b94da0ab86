"""Alembic for each service's own schema, run at start-up (by shared.schema_upgrade, in a
process of its own) and from the alembic CLI.

Each service keeps its migration history and its version table in its own schema, so two
services can share one PostgreSQL database without seeing each other.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateSchema

from shared.db import Database, UTCDateTime
from shared.schema_upgrade import VERSION_TABLE


def _lock_key(schema: str) -> int:
    """A stable signed 64-bit advisory-lock key per schema."""
    digest = hashlib.sha256(f"todo-migrations:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _prepare(connection: AsyncConnection, database: Database) -> None:
    """Serialize concurrent upgraders and make sure the schema exists."""
    if database.kind != "postgresql" or database.schema is None:
        return
    # A transaction-level lock: released at commit, and safe behind a transaction pooler.
    # Another instance starting at the same time waits here, then finds nothing to do.
    await connection.execute(
        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(database.schema)}
    )
    await connection.execute(CreateSchema(database.schema, if_not_exists=True))


def alembic_config(migrations_dir: Path, schema: str | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["schema"] = schema
    return config


async def upgrade_database(
    database: Database, migrations_dir: Path, revision: str = "head"
) -> None:
    """Bring the service's schema to `revision` (the newest by default)."""
    config = alembic_config(migrations_dir, database.schema)

    def upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with database.engine.connect() as connection:
        await _prepare(connection, database)
        await connection.run_sync(upgrade)
        await connection.commit()


def use_schema(connection: Connection, schema: str | None) -> None:
    """Make the service's schema the default one for this transaction (PostgreSQL only).

    Reflection (autogenerate) reads the default schema; emitted SQL is schema-qualified by
    the engine's translate map either way.
    """
    if schema is not None and connection.dialect.name == "postgresql":
        connection.execute(text(f'SET LOCAL search_path TO "{schema}"'))
        connection.dialect.default_schema_name = schema


def context_options(metadata: MetaData | None, schema: str | None, dialect: str) -> dict[str, Any]:
    """How Alembic sees one service: its schema, its version table and, for autogenerate,
    its metadata (an upgrade or a downgrade needs none)."""
    options: dict[str, Any] = {
        "version_table": VERSION_TABLE,
        "version_table_schema": schema,
        "render_as_batch": dialect == "sqlite",
    }
    if metadata is not None:
        options |= {
            "target_metadata": metadata,
            "include_name": _include_name,
            "include_object": _include_object(metadata, dialect),
            "render_item": _render_item,
            "compare_type": True,
        }
    return options


def _include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    # Alembic's own bookkeeping table is not a model; autogenerate must not drop it.
    return not (type_ == "table" and name == VERSION_TABLE)


def _include_object(
    metadata: MetaData, dialect: str
) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """What autogenerate compares: all but two kinds of model index.

    - `info={"compare": False}`: indexes on an expression PostgreSQL reflects in a form
      Alembic cannot match to the model (a CASE); their tests check them instead.
    - `.ddl_if(dialect=...)`: indexes that exist on that backend only.
    """
    uncompared = {
        index.name
        for table in metadata.tables.values()
        for index in table.indexes
        if index.info.get("compare") is False
    }

    def include(obj: Any, name: str | None, type_: str, reflected: bool, _other: Any) -> bool:
        if type_ == "index" and name in uncompared:
            return False
        condition = getattr(obj, "_ddl_if", None)
        if reflected or condition is None or condition.dialect is None:
            return True
        wanted = condition.dialect
        return dialect == wanted if isinstance(wanted, str) else dialect in wanted

    return include


def _render_item(type_: str, obj: Any, _context: AutogenContext) -> str | bool:
    """Write plain SQLAlchemy types into migrations, so they never import app code."""
    # Autogenerate only (the CLI): an upgrade at start-up need not load SQLModel.
    from sqlmodel.sql.sqltypes import AutoString  # noqa: PLC0415

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def run_env(load_metadata: Callable[[], MetaData], open_database: Callable[[], Database]) -> None:
    """The body of a service's `migrations/env.py`.

    At start-up (shared.schema_upgrade) Alembic is handed a connection and only upgrades:
    the service's models, which only autogenerate compares against, are not even loaded.
    From the CLI (`alembic -c <service>/alembic.ini ...`) the database comes from the
    environment.
    """
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection, None, context.config.attributes.get("schema"))
        return
    asyncio.run(_run_from_cli(load_metadata(), open_database()))


def _run(connection: Connection, metadata: MetaData | None, schema: str | None) -> None:
    default_schema = connection.dialect.default_schema_name
    try:
        use_schema(connection, schema)
        context.configure(
            connection=connection,
            **context_options(metadata, schema, connection.dialect.name),
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        # The dialect is shared with the engine the service goes on to use.
        connection.dialect.default_schema_name = default_schema


async def _run_from_cli(metadata: MetaData, database: Database) -> None:
    if database.kind == "sqlite":
        # The services make it at start-up; the CLI may run first.
        Path(database.location).parent.mkdir(parents=True, exist_ok=True)
    try:
        async with database.engine.connect() as connection:
            await _prepare(connection, database)
            await connection.run_sync(_run, metadata, database.schema)
            await connection.commit()
    finally:
        await database.dispose()
