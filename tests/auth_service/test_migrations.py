"""The auth schema is created and upgraded by the service itself, safely."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlmodel import select

from auth_service.app import MIGRATIONS_DIR
from auth_service.models import RefreshToken, User, metadata
from shared.db import Database, create_database, utcnow
from shared.migrations import upgrade_database
from shared.schema_upgrade import VERSION_TABLE
from tests.auth_service.conftest import auth_settings
from tests.support.databases import (
    Backend,
    check_upgrades_wait_for_the_lock,
    downgrade_database,
    drop_schema,
    schema_differences,
)


def _database(backend: Backend, schema: str | None = None) -> Database:
    overrides = {"auth_db_schema": schema} if schema else {}
    settings = auth_settings(backend, **overrides)
    return create_database(settings.database_config(), schema=settings.auth_db_schema, name="auth")


async def test_models_and_migrations_agree(backend: Backend) -> None:
    database = _database(backend)
    try:
        await upgrade_database(database, MIGRATIONS_DIR)

        assert await schema_differences(database, metadata) == []
    finally:
        await _cleanup(database, backend)


async def test_upgrading_twice_is_a_no_op(backend: Backend) -> None:
    database = _database(backend)
    try:
        await upgrade_database(database, MIGRATIONS_DIR)
        async with database.sessionmaker() as session:
            session.add(User(email="kept@example.com", hashed_password="x"))
            await session.commit()

        await upgrade_database(database, MIGRATIONS_DIR)

        assert await _current_revisions(database) == ("0002",)
        assert await schema_differences(database, metadata) == []
        async with database.sessionmaker() as session:
            users = (await session.exec(select(User))).all()
        assert [user.email for user in users] == ["kept@example.com"]
    finally:
        await _cleanup(database, backend)


async def test_downgrading_0002_keeps_refresh_tokens_and_upgrading_again_works(
    backend: Backend,
) -> None:
    database = _database(backend)
    try:
        await upgrade_database(database, MIGRATIONS_DIR)
        async with database.sessionmaker() as session:
            user = User(email="downgraded@example.com", hashed_password="x")
            session.add(user)
            await session.commit()
            session.add(
                RefreshToken(
                    id="t-downgraded",
                    user_id=user.id,
                    family_id="f1",
                    parent_id="t0",
                    token_hash="h" * 64,
                    issued_at=utcnow(),
                    expires_at=utcnow(),
                )
            )
            await session.commit()

        await downgrade_database(database, MIGRATIONS_DIR, "0001")

        assert await _current_revisions(database) == ("0001",)
        await upgrade_database(database, MIGRATIONS_DIR)
        assert await schema_differences(database, metadata) == []
        async with database.sessionmaker() as session:
            tokens = (await session.exec(select(RefreshToken))).all()
        # The parent link is gone with the column; the token itself is kept.
        assert [(token.id, token.parent_id) for token in tokens] == [("t-downgraded", None)]
    finally:
        await _cleanup(database, backend)


async def _current_revisions(database: Database) -> tuple[str, ...]:
    def read(connection: Connection) -> tuple[str, ...]:
        options = {"version_table": VERSION_TABLE, "version_table_schema": database.schema}
        return MigrationContext.configure(connection, opts=options).get_current_heads()

    async with database.engine.connect() as connection:
        return await connection.run_sync(read)


@pytest.mark.postgres
async def test_tables_and_version_live_in_the_service_schema_only(
    postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    database = _database(Backend("postgres", postgres_url, tmp_path), pg_schema)
    try:
        await upgrade_database(database, MIGRATIONS_DIR)
    finally:
        await database.dispose()

    connection = await asyncpg.connect(postgres_url)
    try:
        tables = await connection.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_name IN ('users', 'refresh_tokens', 'alembic_version') "
            "AND table_schema = $1",
            pg_schema,
        )
        version = await connection.fetchval(
            f'SELECT version_num FROM "{pg_schema}".alembic_version'
        )
    finally:
        await connection.close()
    assert {row["table_name"] for row in tables} == {"users", "refresh_tokens", "alembic_version"}
    assert version == "0002"


@pytest.mark.postgres
async def test_concurrent_start_ups_serialize_on_an_advisory_lock(
    postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    backend = Backend("postgres", postgres_url, tmp_path)
    first, second = _database(backend, pg_schema), _database(backend, pg_schema)
    try:
        await check_upgrades_wait_for_the_lock(
            postgres_url,
            pg_schema,
            lambda: asyncio.gather(
                upgrade_database(first, MIGRATIONS_DIR), upgrade_database(second, MIGRATIONS_DIR)
            ),
            "0002",
            held=0.5,
        )
    finally:
        await first.dispose()
        await second.dispose()


async def _cleanup(database: Database, backend: Backend) -> None:
    await database.dispose()
    if backend.database_url and database.schema:
        await drop_schema(backend.database_url, database.schema)
