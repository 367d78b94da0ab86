"""The tasks schema is created by the service's own migrations, and matches its models."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlmodel import col, select, update

from shared.db import Database, create_database
from shared.migrations import upgrade_database
from task_service.app import MIGRATIONS_DIR
from task_service.models import Task, TaskCount, metadata
from tests.support.databases import (
    Backend,
    downgrade_database,
    drop_schema,
    schema_differences,
)
from tests.task_service.conftest import task_settings


async def test_models_and_migrations_agree(backend: Backend) -> None:
    settings = task_settings(backend)
    database = create_database(
        settings.database_config(), schema=settings.task_db_schema, name="tasks"
    )
    try:
        await upgrade_database(database, MIGRATIONS_DIR)

        assert await schema_differences(database, metadata) == []
    finally:
        await database.dispose()
        if backend.database_url:
            await drop_schema(backend.database_url, settings.task_db_schema)


async def _add_tasks(database: Database, *tasks: tuple[str, str, bool]) -> None:
    async with database.sessionmaker() as session:
        for user, priority, done in tasks:
            session.add(Task(user_id=user, title="t", priority=priority, completed=done))
        await session.commit()


async def _per_user_counts(database: Database) -> set[tuple[str, int, int]]:
    """task_counts as 0002 and 0003 shape it: (user_id, total, completed)."""
    table = f'"{database.schema}".task_counts' if database.schema else "task_counts"
    async with database.engine.connect() as connection:
        result = await connection.execute(text(f"SELECT user_id, total, completed FROM {table}"))
        return {(user, total, completed) for user, total, completed in result.all()}


async def test_downgrading_0004_restores_per_user_counts_and_upgrading_again_works(
    backend: Backend,
) -> None:
    settings = task_settings(backend)
    database = create_database(
        settings.database_config(), schema=settings.task_db_schema, name="tasks"
    )
    try:
        await upgrade_database(database, MIGRATIONS_DIR)
        await _add_tasks(database, ("ann", "high", True), ("ann", "low", False))
        await _add_tasks(database, ("ann", "high", False), ("ben", "medium", True))

        await downgrade_database(database, MIGRATIONS_DIR, "0003")

        assert await _per_user_counts(database) == {("ann", 3, 1), ("ben", 1, 1)}
        # 0003's triggers are back: they follow inserts and toggles, not priority changes.
        await _add_tasks(database, ("ben", "low", False))
        async with database.sessionmaker() as session:
            await session.exec(
                update(Task).where(col(Task.user_id) == "ann").values(completed=True)
            )
            await session.exec(update(Task).values(priority="high"))
            await session.commit()
        assert await _per_user_counts(database) == {("ann", 3, 3), ("ben", 2, 1)}
        if backend.is_postgres:
            async with database.engine.begin() as connection:
                await connection.execute(text(f'SELECT "{database.schema}".recount_tasks()'))
            assert await _per_user_counts(database) == {("ann", 3, 3), ("ben", 2, 1)}

        await upgrade_database(database, MIGRATIONS_DIR)

        assert await schema_differences(database, metadata) == []
        async with database.sessionmaker() as session:
            rows = (await session.exec(select(TaskCount))).all()
        assert {(row.user_id, row.priority, row.completed, row.count) for row in rows} == {
            ("ann", "high", True, 3),
            ("ben", "high", True, 1),
            ("ben", "high", False, 1),
        }
    finally:
        await database.dispose()
        if backend.database_url:
            await drop_schema(backend.database_url, settings.task_db_schema)


@pytest.mark.postgres
async def test_table_indexes_and_version_live_in_the_service_schema(
    postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    settings = task_settings(Backend("postgres", postgres_url, tmp_path), task_db_schema=pg_schema)
    database = create_database(settings.database_config(), schema=pg_schema, name="tasks")
    try:
        await upgrade_database(database, MIGRATIONS_DIR)
    finally:
        await database.dispose()

    connection = await asyncpg.connect(postgres_url)
    try:
        tables = await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", pg_schema
        )
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1", pg_schema
        )
        version = await connection.fetchval(
            f'SELECT version_num FROM "{pg_schema}".alembic_version'
        )
        function_schemas = await connection.fetch(
            "SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE p.proname = 'count_tasks'"
        )
    finally:
        await connection.close()
    assert {row["table_name"] for row in tables} == {"tasks", "task_counts", "alembic_version"}
    assert pg_schema in {row["nspname"] for row in function_schemas}
    definitions = {row["indexname"]: row["indexdef"] for row in indexes}
    assert "(user_id, created_at, id)" in definitions["ix_tasks_user_id_created_at_id"]
    assert (
        "(user_id, completed, created_at, id)"
        in definitions["ix_tasks_user_id_completed_created_at_id"]
    )
    # Autogenerate cannot compare the priority index here, and skips the one below elsewhere.
    assert {index.name for index in metadata.tables["tasks"].indexes} <= set(definitions)
    assert "due_date DESC NULLS LAST, id DESC" in definitions["ix_tasks_user_id_due_date_desc_id"]
    assert version == "0005"
