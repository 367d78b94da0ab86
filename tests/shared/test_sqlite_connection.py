"""How every SQLite connection is set up: durable commits and Unicode-aware lower()."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.db import Database, create_database
from shared.settings import ServiceSettings


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    settings = ServiceSettings(_env_file=None, data_dir=tmp_path)
    database = create_database(settings.database_config(), schema="unused", name="check")
    yield database
    await database.dispose()


async def test_commits_wait_for_the_disk(database: Database) -> None:
    async with database.engine.connect() as connection:
        synchronous = await connection.scalar(text("PRAGMA synchronous"))
        journal_mode = await connection.scalar(text("PRAGMA journal_mode"))

    assert (synchronous, journal_mode) == (2, "wal")  # 2 is FULL


async def test_lower_folds_more_than_ascii(database: Database) -> None:
    async with database.engine.connect() as connection:
        lowered = await connection.scalar(text("SELECT lower('ÄPFEL Ölig ÉTÉ')"))
        null = await connection.scalar(text("SELECT lower(NULL)"))

    assert (lowered, null) == ("äpfel ölig été", None)


async def test_lower_may_be_used_in_an_index(database: Database) -> None:
    async with database.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (title TEXT NOT NULL)"))
        await connection.execute(text("CREATE INDEX ix_t_lower_title ON t (lower(title))"))
        await connection.execute(text("INSERT INTO t VALUES ('ÄPFEL'), ('apfel')"))
        found = await connection.scalar(text("SELECT title FROM t WHERE lower(title) = 'äpfel'"))

    assert found == "ÄPFEL"
