"""The schema upgrade at start-up: done by a process of its own, only when the schema is
behind, under the advisory lock, with its failures reported as one line."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import psutil
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.exc import ProgrammingError

from auth_service.app import MIGRATIONS_DIR as AUTH_MIGRATIONS
from shared.database_startup import DatabaseStartupError, classify, start_database
from shared.db import Database, create_database
from shared.migrations import _lock_key, upgrade_database
from shared.schema_upgrade import head_revision, schema_revisions, upgrade_schema
from task_service.app import MIGRATIONS_DIR as TASK_MIGRATIONS
from tests.support.databases import Backend, check_upgrades_wait_for_the_lock, drop_schema
from tests.task_service.conftest import task_settings

TASK_HEAD = "0005"


def _database(backend: Backend, schema: str | None = None) -> Database:
    overrides = {"task_db_schema": schema} if schema else {}
    settings = task_settings(backend, **overrides)
    return create_database(settings.database_config(), schema=settings.task_db_schema, name="tasks")


async def _cleanup(database: Database, backend: Backend) -> None:
    await database.dispose()
    if backend.database_url and database.schema:
        await drop_schema(backend.database_url, database.schema)


@pytest.mark.parametrize("migrations", [AUTH_MIGRATIONS, TASK_MIGRATIONS], ids=["auth", "tasks"])
def test_the_head_read_from_the_scripts_is_alembics(migrations: Path) -> None:
    assert head_revision(migrations) == ScriptDirectory(str(migrations)).get_current_head()


def _scripts(tmp_path: Path, *revisions: tuple[str, str]) -> Path:
    versions = tmp_path / "versions"
    versions.mkdir()
    for number, (revision, down_revision) in enumerate(revisions):
        (versions / f"{number}.py").write_text(
            f"revision = {revision}\ndown_revision: str | None = {down_revision}\n"
        )
    return tmp_path


@pytest.mark.parametrize(
    "revisions",
    [
        (("'a'", "None"), ("'b'", "'a'"), ("'c'", "'a'")),
        (("'a'", "None"), ("'b'", "'a'"), ("'c'", "'a'"), ("'d'", "('b', 'c')")),
        (("'a'", "None"), ("NAME", "'a'")),
    ],
    ids=["branch", "merge", "not-a-string"],
)
def test_no_head_is_read_from_scripts_that_are_not_one_line(
    tmp_path: Path, revisions: tuple[tuple[str, str], ...]
) -> None:
    assert head_revision(_scripts(tmp_path, *revisions)) is None


def test_a_line_of_scripts_has_its_newest_as_head(tmp_path: Path) -> None:
    scripts = _scripts(tmp_path, ("'b'", "'a'"), ("'a'", "None"), ("'c'", "'b'"))

    assert head_revision(scripts) == "c"


async def test_a_new_schema_is_upgraded_by_a_process_then_left_alone(
    backend: Backend, capfd: pytest.CaptureFixture[str]
) -> None:
    database = _database(backend)
    try:
        assert await schema_revisions(database) == set()

        await upgrade_schema(database, TASK_MIGRATIONS, service="tasks")
        upgraded = capfd.readouterr().out
        await upgrade_schema(database, TASK_MIGRATIONS, service="tasks")
        again = capfd.readouterr().out

        assert await schema_revisions(database) == {TASK_HEAD}
        # The upgrading process logs as the service does, to the same output.
        assert f"tasks [-] alembic.runtime.migration: Running upgrade 0004 -> {TASK_HEAD}" in (
            upgraded
        )
        assert "alembic" not in again, "a schema at its head needs no upgrading process"
    finally:
        await _cleanup(database, backend)


async def test_a_schema_behind_its_head_is_upgraded(backend: Backend) -> None:
    database = _database(backend)
    try:
        await upgrade_database(database, TASK_MIGRATIONS, "0003")

        await upgrade_schema(database, TASK_MIGRATIONS, service="tasks")

        assert await schema_revisions(database) == {TASK_HEAD}
    finally:
        await _cleanup(database, backend)


@pytest.mark.postgres
async def test_start_ups_wait_for_another_upgrader_holding_the_lock(
    postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    backend = Backend("postgres", postgres_url, tmp_path)
    first, second = _database(backend, pg_schema), _database(backend, pg_schema)
    try:
        await check_upgrades_wait_for_the_lock(
            postgres_url,
            pg_schema,
            lambda: asyncio.gather(
                upgrade_schema(first, TASK_MIGRATIONS, service="tasks"),
                upgrade_schema(second, TASK_MIGRATIONS, service="tasks"),
            ),
            TASK_HEAD,
            held=3,
        )
    finally:
        await first.dispose()
        await second.dispose()


def _upgrading_processes() -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process().children(recursive=True)
        if "shared.schema_upgrade" in child.cmdline()
    ]


@pytest.mark.postgres
async def test_a_start_up_stopped_meanwhile_ends_its_upgrading_process(
    postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    database = _database(Backend("postgres", postgres_url, tmp_path), pg_schema)
    holder = await asyncpg.connect(postgres_url)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(pg_schema))
        upgrade = asyncio.create_task(upgrade_schema(database, TASK_MIGRATIONS, service="tasks"))
        for _ in range(100):
            if _upgrading_processes():
                break
            await asyncio.sleep(0.1)
        (process,) = _upgrading_processes()

        upgrade.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upgrade

        assert not process.is_running()
        await transaction.commit()
        assert await schema_revisions(database) == set()
    finally:
        await holder.close()
        await database.dispose()


@pytest.mark.postgres
async def test_a_failing_migration_stops_start_up_with_the_cause_in_one_line(
    postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(TASK_MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "0006_broken.py").write_text(
        "from alembic import op\n\n"
        f"revision = '0006'\ndown_revision = '{TASK_HEAD}'\n\n\n"
        "def upgrade() -> None:\n    op.execute('SELECT * FROM no_such_table')\n"
    )
    backend = Backend("postgres", postgres_url, tmp_path)
    database = _database(backend, pg_schema)
    try:
        with pytest.raises(DatabaseStartupError) as raised:
            await start_database(
                database,
                lambda: upgrade_schema(database, migrations, service="tasks"),
                wait_seconds=5,
            )
        # The same line as the failure classified where it happened.
        with pytest.raises(ProgrammingError) as in_process:
            await upgrade_database(database, migrations)
        transient, cause = classify(in_process.value, database)
    finally:
        await database.dispose()

    assert not transient
    assert 'relation "no_such_table" does not exist' in cause
    assert str(raised.value) == f"Database configuration error: {cause}"
    # The failed upgrade left nothing half done (one transaction, rolled back).
    fresh = _database(backend, pg_schema)
    try:
        assert await schema_revisions(fresh) == set()
    finally:
        await fresh.dispose()
