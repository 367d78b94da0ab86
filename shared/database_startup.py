"""A service's start-up against its database: wait out what passes, stop on what does not.

An unreachable database (refused, timed out, a Neon compute waking up, a server starting) is
retried for a while, with the real cause in each line. A setting that retrying cannot fix
(a certificate, a password, a database name, a read-only directory) stops the service at
once with one line naming the cause and the setting, and, under supervisord, the whole stack
with exit status 1, instead of a restart loop that never reaches FATAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import NoReturn

import asyncpg

from shared.database_tls import DatabaseConfigurationError
from shared.db import Database
from shared.supervision import running_under_supervisord, stop_the_stack

logger = logging.getLogger(__name__)

# How long start-up waits for an unreachable database (a cold Neon compute, a database
# container still booting) before giving up.
STARTUP_DATABASE_WAIT_SECONDS = 30.0
# sysexits.h's EX_CONFIG: the process stopped on its configuration.
EXIT_CONFIGURATION = 78


class DatabaseStartupError(Exception):
    """Start-up stopped: the message is the one line an operator needs."""


class StartupInterrupted(DatabaseStartupError):  # noqa: N818 (a stop, not a failure)
    """SIGTERM or SIGINT arrived while waiting for the database."""

    def __init__(self, signum: int) -> None:
        super().__init__(
            f"Stopped by {signal.Signals(signum).name} while waiting for the database at start-up"
        )
        self.signum = signum


class ClassifiedError(Exception):
    """A failure another process has classified already (the schema upgrade's own)."""

    def __init__(self, cause: str, *, transient: bool) -> None:
        super().__init__(cause)
        self.cause = cause
        self.transient = transient


# Transient SQLSTATEs: connection failures, too many connections, a server shutting down or
# starting (Neon's proxy answers 08xxx/XX000 while a compute wakes up).
_TRANSIENT_SQLSTATES = ("08", "53300", "57P01", "57P02", "57P03", "XX000")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what it wraps (SQLAlchemy's `orig`, then Python's chain)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = (
            orig
            if isinstance(orig, BaseException) and id(orig) not in seen
            else current.__cause__ or current.__context__
        )


def classify(exc: BaseException, database: Database) -> tuple[bool, str]:
    """(transient?, one line naming the cause and, for a setting, which one to change)."""
    for cause in _causes(exc):
        if isinstance(cause, ClassifiedError):
            return cause.transient, cause.cause
        verdict = _configuration_error(cause, database) or _transient_error(cause, database)
        if verdict is not None:
            return verdict
    # Unknown (a failing migration, say): retrying would fail the same way.
    return False, f"{type(exc).__name__}: {exc}"


def _configuration_error(cause: BaseException, database: Database) -> tuple[bool, str] | None:
    where = database.location
    message: str | None = None
    if isinstance(cause, DatabaseConfigurationError):
        message = str(cause)
    elif isinstance(cause, ssl.SSLCertVerificationError):
        binding = database.connector is not None and (
            database.connector.url.channel_binding == "require"
        )
        message = (
            f"the TLS certificate of {where} was not accepted "
            f"({cause.verify_message or cause.reason}): check sslmode and sslrootcert in "
            "DATABASE_URL"
            + (
                " (channel_binding=require verifies against the system trust store)"
                if binding
                else ""
            )
        )
    elif isinstance(cause, ssl.SSLError):
        message = (
            f"TLS with {where} failed ({cause.reason or cause}): check sslmode in DATABASE_URL"
        )
    elif isinstance(cause, ConnectionError) and "rejected SSL upgrade" in str(cause):
        message = f"{where} does not accept TLS: check sslmode in DATABASE_URL"
    elif isinstance(cause, asyncpg.InvalidPasswordError):
        message = f"{cause}: check the user name and password in DATABASE_URL"
    elif isinstance(cause, asyncpg.InvalidCatalogNameError):
        message = f"{cause}: check the database name in DATABASE_URL"
    elif isinstance(cause, asyncpg.InvalidAuthorizationSpecificationError):
        message = (
            f"the server refused the connection ({cause}): "
            "check the user and sslmode in DATABASE_URL"
        )
    elif isinstance(cause, asyncpg.ClientConfigurationError):
        message = f"{cause}: check DATABASE_URL"
    elif database.kind == "sqlite" and _cannot_write_sqlite(cause):
        message = (
            f"cannot write the SQLite database {where} ({cause}): set DATA_DIR to a writable "
            "directory (or DATABASE_URL)"
        )
    return None if message is None else (False, message)


def _cannot_write_sqlite(cause: BaseException) -> bool:
    # Imported only on SQLite, whose driver has loaded it already: on PostgreSQL it would be
    # a module and a library in memory for nothing.
    import sqlite3  # noqa: PLC0415

    return isinstance(cause, PermissionError | sqlite3.OperationalError)


def _transient_error(cause: BaseException, database: Database) -> tuple[bool, str] | None:
    if isinstance(cause, asyncpg.PostgresError):
        sqlstate = str(getattr(cause, "sqlstate", "") or "")
        if sqlstate.startswith(_TRANSIENT_SQLSTATES):
            return True, f"{type(cause).__name__}: {cause}"
        # Anything else the server says (a failed migration) it will say again.
        return False, f"{type(cause).__name__} (SQLSTATE {sqlstate}): {cause}"
    if isinstance(cause, TimeoutError):
        return True, f"timed out connecting to {database.location}"
    if isinstance(cause, OSError):
        return True, f"{type(cause).__name__}: {cause.strerror or cause}"
    if isinstance(cause, asyncpg.InterfaceError):
        return True, f"{type(cause).__name__}: {cause}"
    return None


async def wait_for_database(
    database: Database,
    action: Callable[[], Awaitable[None]],
    *,
    wait_seconds: float = STARTUP_DATABASE_WAIT_SECONDS,
) -> None:
    """Run `action` (the migrations) once the database answers.

    Raises DatabaseStartupError on a configuration error or once `wait_seconds` have gone
    by, and StartupInterrupted when the process is told to stop meanwhile.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    delay = 0.5
    with _stoppable() as stopped_by:
        while True:
            try:
                if stopped_by:
                    raise StartupInterrupted(stopped_by[0])
                try:
                    await action()
                    return
                except Exception as exc:
                    transient, cause = classify(exc, database)
                    if not transient:
                        raise DatabaseStartupError(
                            f"Database configuration error: {cause}"
                        ) from exc
                    if loop.time() + delay > deadline:
                        raise DatabaseStartupError(
                            f"Database unreachable for {wait_seconds:.0f} s at start-up: {cause}"
                        ) from exc
                    logger.warning("Database unreachable at start-up (%s); retrying", cause)
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                if stopped_by:
                    raise StartupInterrupted(stopped_by[0]) from None
                raise
            delay = min(delay * 2, 5.0)


@contextlib.contextmanager
def _stoppable() -> Iterator[list[int]]:
    """Cancel the start-up on SIGTERM/SIGINT, after the server's own handler has seen it.

    uvicorn only notes a signal until start-up has finished, so without this a service
    waiting for its database could not be stopped until the wait gave up.
    """
    stopped_by: list[int] = []
    task = asyncio.current_task()
    if task is None or threading.current_thread() is not threading.main_thread():
        yield stopped_by
        return
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler = previous[signal.Signals(signum)]
        if callable(handler):
            handler(signum, frame)
        stopped_by.append(signum)
        loop.call_soon_threadsafe(task.cancel)

    for sig in previous:
        signal.signal(sig, on_signal)
    # A signal may have come before this handler did, while the process was still starting.
    if (early := _noted_by_server(previous.values())) is not None:
        stopped_by.append(early)
    try:
        yield stopped_by
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _noted_by_server(handlers: Iterable[object]) -> int | None:
    """The stop signal a server's handler (uvicorn's `Server.handle_exit`) already took."""
    for handler in handlers:
        server = getattr(handler, "__self__", None)
        if getattr(server, "should_exit", False):
            captured = getattr(server, "_captured_signals", None) or [signal.SIGTERM]
            return int(captured[-1])
    return None


def prepare_sqlite_directory(database: Database) -> None:
    """Create the SQLite file's directory, or say which setting makes it writable."""
    if database.kind != "sqlite":
        return
    directory = Path(database.location).parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseConfigurationError(
            f"cannot create {directory} for the SQLite database ({exc.strerror}): set DATA_DIR "
            "to a writable directory (or DATABASE_URL)"
        ) from None
    if not os.access(directory, os.W_OK):
        raise DatabaseConfigurationError(
            f"{directory} is not writable, so the SQLite database cannot be stored there: set "
            "DATA_DIR to a writable directory (or DATABASE_URL)"
        )


async def start_database(
    database: Database,
    action: Callable[[], Awaitable[None]],
    *,
    wait_seconds: float = STARTUP_DATABASE_WAIT_SECONDS,
) -> None:
    """`wait_for_database`, and the process's way out when start-up cannot go on.

    SIGTERM during the wait ends the process at once. Under supervisord a configuration
    error ends the service with one line and stops the stack with exit status 1; elsewhere
    (tests, a bare uvicorn) errors are raised to the caller.
    """
    try:
        prepare_sqlite_directory(database)
        await wait_for_database(database, action, wait_seconds=wait_seconds)
    except StartupInterrupted as exc:
        logger.info("%s", exc)
        if exc.signum == signal.SIGTERM:
            # Only a process manager (or an operator) sends SIGTERM, and it wants the process
            # gone: nothing was started that needs an orderly end.
            _exit(0)
        raise
    except (DatabaseStartupError, DatabaseConfigurationError) as exc:
        message = str(exc)
        if isinstance(exc, DatabaseConfigurationError):
            message = f"Database configuration error: {message}"
        logger.error("%s", message)
        if running_under_supervisord():
            if message.startswith("Database unreachable"):
                # Perhaps it is back by the time supervisord has restarted us.
                _exit(1)
            stop_the_stack()
            _exit(EXIT_CONFIGURATION)
        raise DatabaseStartupError(message) from exc


def _exit(status: int) -> NoReturn:
    # The server would print the start-up failure again with a traceback; the line above
    # already said everything.
    logging.shutdown()
    os._exit(status)
