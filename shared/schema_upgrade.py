"""Each service's schema brought to its newest revision at start-up, Alembic kept out of the
serving process.

Alembic, with Mako (and Pygments, where installed) that it loads, is 8 to 10 MiB of a
service's memory and is needed only while migrating: a serving process that imported it
would keep it for as long as it runs (bench/history.md). So the service reads its schema's
revision itself, with its own engine (its connection errors are reported as ever), and only
when the schema is behind or new runs `python -m shared.schema_upgrade`: a process that
upgrades it with Alembic (shared.migrations, under the advisory lock against concurrent
upgraders) and exits.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import os
import pickle
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Column, Connection, MetaData, String, Table, inspect, select

import shared
from shared.database_startup import ClassifiedError, classify
from shared.db import Database, DatabaseOrigin
from shared.logging import configure_logging

VERSION_TABLE = "alembic_version"
# sysexits.h's EX_TEMPFAIL: the upgrade failed on something a retry may get past.
EXIT_TRANSIENT = 75
# The directory `shared` is in, for the child's import path wherever the service runs from.
_PROJECT_ROOT = str(Path(shared.__file__).resolve().parent.parent)


@dataclass(frozen=True)
class UpgradeRequest:
    """What the upgrading process is handed: the database, the scripts, how to log."""

    origin: DatabaseOrigin
    migrations_dir: Path
    service: str
    log_level: str
    log_format: str


def head_revision(migrations_dir: Path) -> str | None:
    """The newest revision of the scripts in `migrations_dir/versions`, read as text.

    None unless they form one line of revisions (a branch, a merge, a revision that is not
    a plain string): Alembic itself then decides what to run.
    """
    parents: dict[str, str | None] = {}
    for path in sorted((migrations_dir / "versions").glob("*.py")):
        values: dict[str, object] = {}
        for node in ast.parse(path.read_bytes(), str(path)).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
                values[target.id] = value.value
        revision, parent = values.get("revision"), values.get("down_revision")
        if not isinstance(revision, str) or not isinstance(parent, str | None):
            return None
        parents[revision] = parent
    heads = set(parents) - set(parents.values())
    return heads.pop() if len(heads) == 1 else None


async def schema_revisions(database: Database) -> set[str]:
    """The revisions the service's schema is at (none for a new schema)."""
    # No schema named: on PostgreSQL the engine maps the table into the service's schema.
    versions = Table(VERSION_TABLE, MetaData(), Column("version_num", String(32)))

    def read(connection: Connection) -> set[str]:
        if not inspect(connection).has_table(VERSION_TABLE, schema=database.schema):
            return set()
        return set(connection.execute(select(versions.c.version_num)).scalars())

    async with database.engine.connect() as connection:
        return await connection.run_sync(read)


async def upgrade_schema(
    database: Database,
    migrations_dir: Path,
    *,
    service: str,
    log_level: str = "INFO",
    log_format: str = "text",
) -> None:
    """Bring the service's schema to the newest revision: nothing to do when it is there
    already, else an upgrading process logging as `service` does.

    Raises what connecting raises, and ClassifiedError when the upgrade fails.
    """
    head = head_revision(migrations_dir)
    if head is not None and await schema_revisions(database) == {head}:
        return
    if database.origin is None:
        raise ValueError("the database was not made by create_database")
    request = UpgradeRequest(database.origin, migrations_dir, service, log_level, log_format)
    path = os.environ.get("PYTHONPATH")
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.schema_upgrade",
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (_PROJECT_ROOT, path)))},
    )
    try:
        _, errors = await child.communicate(pickle.dumps(request))
    except BaseException:
        # Stopped while waiting (SIGTERM at start-up): the upgrade goes with it, and its
        # transaction with its connection.
        if child.returncode is None:
            child.kill()
            await child.wait()
        raise
    if child.returncode != 0:
        raise ClassifiedError(
            _failure(child.returncode, errors.decode(errors="replace")),
            transient=child.returncode == EXIT_TRANSIENT,
        )


def _failure(status: int | None, errors: str) -> str:
    """The one line that says why the upgrading process failed."""
    lines = errors.strip().splitlines()
    if lines:
        return lines[-1]
    if status is not None and status < 0:
        return f"the schema upgrade was ended by {signal.Signals(-status).name}"
    return f"the schema upgrade failed with exit status {status}"


def main() -> int:
    """The upgrading process: upgrade as asked on stdin; exit 0, or print the cause of the
    failure (the last line on stderr) and exit EXIT_TRANSIENT or 1."""
    request: UpgradeRequest = pickle.load(sys.stdin.buffer)  # noqa: S301 (the service's own)
    # Here only: importing Alembic is what the serving process must not do.
    from shared.migrations import upgrade_database  # noqa: PLC0415

    configure_logging(request.log_level, request.service, request.log_format)
    database = request.origin.open()

    async def upgrade() -> None:
        try:
            await upgrade_database(database, request.migrations_dir)
        finally:
            await database.dispose()

    try:
        asyncio.run(upgrade())
    except Exception as exc:
        transient, cause = classify(exc, database)
        print(cause, file=sys.stderr)
        return EXIT_TRANSIENT if transient else 1
    return 0


if __name__ == "__main__":
    # Run as the module itself, not as __main__: the request names its classes by module.
    from shared.schema_upgrade import main as run

    status = run()
    # The log handler holds lines for a moment (shared.logging): written before the exit.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is closed and written: tearing down the interpreter's thousand modules
    # would only add a fifth of a second to every start-up that upgrades.
    os._exit(status)
