"""Database access for both services: one engine factory (sessions: shared/deps.py).

PostgreSQL (Neon or any other) goes through asyncpg; with no DATABASE_URL each service keeps
its data in its own SQLite file. Models declare no schema: on PostgreSQL the engine maps them
into the service's schema, so the same models run on SQLite, which has none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson
from sqlalchemy import DateTime, Select, event, text
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import greenlet_spawn

from shared.database_transport import Connector
from shared.database_url import DatabaseConfig, DatabaseKind, DatabaseUrl

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession

logger = logging.getLogger(__name__)

# Deterministic constraint names, so migrations and models agree on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLAlchemy's default number of prepared statements kept per connection.
_STATEMENT_CACHE_SIZE = 100

# A statement Database.rows runs: a SELECT, or an INSERT, UPDATE or DELETE.
Statement = Select[Any] | UpdateBase

# Neon suspends idle computes after about five minutes; recycle pooled connections before that.
POOL_RECYCLE_SECONDS = 240
# A pooled connection idle for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0


@dataclass(frozen=True)
class DatabaseOrigin:
    """What `create_database` made a Database of: another process opens the same one with
    it (the schema upgrade at start-up runs in a process of its own)."""

    config: DatabaseConfig
    schema: str
    name: str

    def open(self) -> Database:
        return create_database(self.config, schema=self.schema, name=self.name)


@dataclass
class Database:
    """An engine and its session factory, plus what a service needs to know about them."""

    engine: AsyncEngine
    kind: DatabaseKind
    schema: str | None
    location: str
    connector: Connector | None = None
    pooler: str = "none"
    # SQLite files that a restart will lose.
    ephemeral: bool = False
    origin: DatabaseOrigin | None = None
    # The same pool, its connections in autocommit: for single statements, which need no
    # transaction around them.
    autocommit: AsyncEngine = field(init=False)
    # Statements `rows` has compiled for asyncpg, by id (each kept alive beside its SQL).
    _compiled: dict[int, tuple[Statement, _DriverStatement]] = field(
        init=False, default_factory=dict
    )
    _failure_listeners: list[Callable[[], None]] = field(init=False, default_factory=list)
    # Callers of `rows` take turns here, in the order they came, before they take a pooled
    # connection (None: no such queue). SQLAlchemy's pool lets a newcomer take a connection
    # just handed back while the caller woken for it waits for the event loop, and that
    # caller goes to the back of the queue: some requests waited many times over.
    turns: _Turns | None = None

    def __post_init__(self) -> None:
        self.autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # Fired for every failed statement and connection attempt, unwrapped ones included.
        event.listen(self.engine.sync_engine, "handle_error", lambda _context: self._failed())

    def on_failure(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every failed statement or connection attempt, whether
        SQLAlchemy or `rows` ran it."""
        self._failure_listeners.append(listener)

    def _failed(self) -> None:
        for listener in self._failure_listeners:
            listener()

    @cached_property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        """The session factory, made on first use."""
        # Imported here: the schema upgrade's process opens a Database but no session, and
        # SQLModel (pydantic with it) would be a third of its start-up.
        from sqlmodel.ext.asyncio.session import AsyncSession  # noqa: PLC0415

        return async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    async def ping(self) -> None:
        """Run a real query; raises if the database cannot answer."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def rows(
        self, statement: Statement, values: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        """The rows of one statement run on its own in autocommit: each a sequence of the
        statement's columns in order.

        On PostgreSQL the statement is compiled once and asyncpg runs it on a connection of
        the pool: SQLAlchemy's execution around asyncpg (parameters, schema translation, its
        cursor adapter, rows) cost a list more than asyncpg's own work. A failure is raised
        as SQLAlchemy would raise it, and a connection it broke leaves the pool. `statement`
        must be built once (a module's constant or a cached one), not per call.
        """
        if self.kind != "postgresql":
            async with self.autocommit.connect() as connection:
                return (await connection.execute(statement, values)).all()
        compiled = self._compiled.get(id(statement))
        if compiled is None:
            compiled = self._compiled[id(statement)] = (statement, self._compile(statement))
        driver_statement = compiled[1]
        arguments = driver_statement.arguments(values)
        try:
            return await self._fetch(driver_statement.sql, arguments)
        except Exception:
            self._failed()
            raise

    async def _fetch(self, sql: str, arguments: list[Any]) -> Sequence[Sequence[Any]]:
        if self.turns is None:
            return await self._fetch_pooled(sql, arguments)
        async with self.turns:
            return await self._fetch_pooled(sql, arguments)

    async def _fetch_pooled(self, sql: str, arguments: list[Any]) -> Sequence[Sequence[Any]]:
        # The pool's connection itself: SQLAlchemy's Connection around it would only be
        # handed back; closing goes through greenlet_spawn, as AsyncConnection.close does.
        try:
            pooled = await self.engine.raw_connection()
        except self.engine.dialect.loaded_dbapi.Error as exc:
            # As a Connection would raise it: a DBAPIError naming the driver's error.
            raise DBAPIError.instance(
                None, None, exc, self.engine.dialect.loaded_dbapi.Error, dialect=self.engine.dialect
            ) from exc
        try:
            driver: asyncpg.Connection = pooled.driver_connection
            try:
                rows: Sequence[Sequence[Any]] = await driver.fetch(sql, *arguments)
            except (
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
            ) as exc:
                # Only a statement's own error leaves the connection as it was; after any other
                # (a dropped connection, a protocol state asyncpg gave up on) it leaves the pool.
                broken = not isinstance(exc, asyncpg.PostgresError) or driver.is_closed()
                if broken:
                    await greenlet_spawn(pooled.invalidate, exc)
                raise DBAPIError.instance(
                    sql, None, exc, Exception, hide_parameters=True, connection_invalidated=broken
                ) from exc
        finally:
            await greenlet_spawn(pooled.close)
        return rows

    def _compile(self, statement: Statement) -> _DriverStatement:
        dialect = self.engine.dialect
        compiled = statement.compile(
            dialect=dialect, schema_translate_map={None: self.schema} if self.schema else None
        )
        binds = [compiled.binds[name] for name in compiled.positiontup or ()]
        if any(bind.expanding or bind.literal_execute or bind.callable for bind in binds):
            raise ValueError("rows() takes statements whose values are all bound as given")
        sql = compiled.string
        if self.schema:
            # What SQLAlchemy does per execution for `schema_translate_map`, done once.
            sql = compiled.preparer._render_schema_translates(sql, {None: self.schema})
        return _DriverStatement(
            sql,
            tuple(bind.key for bind in binds),
            tuple(_REQUIRED if bind.required else bind.value for bind in binds),
            tuple(bind.type.bind_processor(dialect) for bind in binds),
        )

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.connector is not None:
            await self.connector.aclose()

    def pool_counts(self) -> dict[str, int]:
        """The pool's connections now: its size, how many are checked out, the overflow."""
        pool = self.engine.pool
        counts = {}
        for state, read in (
            ("size", "size"),
            ("checked_out", "checkedout"),
            ("overflow", "overflow"),
        ):
            method = getattr(pool, read, None)
            if callable(method):
                counts[state] = int(method())
        return counts


class _Turns:
    """A first-come, first-served queue for `size` holders at a time, its wait bounded like
    the pool's (raising the pool's own timeout error).

    asyncio's Semaphore hands a released place to the caller that has waited longest, and
    lets no newcomer ahead of one that waits.
    """

    def __init__(self, size: int, timeout: float) -> None:
        self._places = asyncio.Semaphore(size)
        self._timeout = timeout

    async def __aenter__(self) -> None:
        places = self._places
        if not places.locked():
            await places.acquire()  # a free place: taken at once, no timer needed
            return
        try:
            async with asyncio.timeout(self._timeout):
                await places.acquire()
        except TimeoutError:
            raise PoolTimeoutError(
                f"no pooled connection free within {self._timeout:g} s"
            ) from None

    async def __aexit__(self, *_exc: object) -> None:
        self._places.release()


# The default of a bound value that each execution must give.
_REQUIRED = object()


@dataclass(frozen=True, slots=True)
class _DriverStatement:
    """A statement as asyncpg takes it: its SQL and how to make its positional arguments."""

    sql: str
    names: tuple[str, ...]
    defaults: tuple[Any, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        arguments = []
        for name, default, process in zip(self.names, self.defaults, self.processors, strict=True):
            value = values[name] if default is _REQUIRED else values.get(name, default)
            arguments.append(value if process is None else process(value))
        return arguments


def create_database(config: DatabaseConfig, *, schema: str, name: str) -> Database:
    """The engine for one service: its PostgreSQL schema, or its own SQLite file."""
    url = config.url
    if url is None:
        # The directory is made at start-up, where a failure is reported as a setting.
        path = config.data_dir / f"{name}.db"
        url = DatabaseUrl(kind="sqlite", database=str(path))
    if url.kind == "sqlite":
        database = _create_sqlite(url, config)
    else:
        database = _create_postgres(url, config, schema)
    database.origin = DatabaseOrigin(config, schema, name)
    return database


def _create_postgres(url: DatabaseUrl, config: DatabaseConfig, schema: str) -> Database:
    if url.unused:
        logger.info("DATABASE_URL parameters this service does not use: %s", list(url.unused))
    pooler = url.pooler_mode(config.pooler)
    connector = Connector(url, config, transaction_pooler=pooler == "transaction")
    statement_cache_size = 0 if connector.transaction_pooler else _STATEMENT_CACHE_SIZE

    def creator() -> Any:
        # SQLAlchemy's `async_creator` would drop its own statement-cache options; this is
        # the form its documentation gives for passing them along.
        dbapi: Any = engine.sync_engine.dialect.dbapi
        return dbapi.connect(
            async_creator_fn=connector.connect,
            prepared_statement_cache_size=statement_cache_size,
            prepared_statement_name_func=(
                connector.statement_name if connector.transaction_pooler else None
            ),
        )

    engine = create_async_engine(
        # Names the dialect and, in messages, the database; connections come from `creator`.
        URL.create(
            "postgresql+asyncpg",
            username=url.user,
            host=url.host,
            port=url.port,
            database=url.database,
        ),
        creator=creator,
        pool_size=config.pool_size,
        max_overflow=config.max_overflow,
        # Waiting for a busy pool is bounded like a query, not like a (cold) connect.
        pool_timeout=config.command_timeout,
        pool_recycle=POOL_RECYCLE_SECONDS,
        # Parameters (password hashes, emails) stay out of error messages and so out of logs.
        hide_parameters=True,
        # JSON columns (a task's tags) decoded by orjson: json.loads took a tenth of a list.
        json_deserializer=orjson.loads,
        execution_options={"schema_translate_map": {None: schema}},
    )
    _ping_after_idle(engine, PING_AFTER_IDLE_SECONDS)
    return Database(
        engine,
        "postgresql",
        schema,
        url.safe_description,
        connector=connector,
        pooler=pooler,
        turns=_Turns(config.pool_size + config.max_overflow, config.command_timeout),
    )


def _ping_after_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a pooled connection before use only when it has been idle for `idle_seconds`.

    SQLAlchemy's `pool_pre_ping` pings on every checkout, and asyncpg's ping is a transaction
    of its own: three round trips before each request's own statements. A connection in
    steady use has just proved itself; one left idle may have been dropped (a server or
    pooler restart, a network cut) and is replaced here, before a request meets it.
    """

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return  # new, or just used
        try:
            dbapi_connection.ping()
        except Exception as exc:  # whatever the failure, the pool tries another connection
            raise DisconnectionError("pooled connection did not answer a ping") from exc

    event.listen(engine.sync_engine, "checkin", checked_in)
    event.listen(engine.sync_engine, "checkout", checked_out)


def _create_sqlite(url: DatabaseUrl, config: DatabaseConfig) -> Database:
    # One connection per process: SQLite allows one writer at a time anyway, and a single
    # connection cannot deadlock with itself upgrading a read lock ("database is locked").
    engine = create_async_engine(
        URL.create("sqlite+aiosqlite", database=url.database),
        connect_args={"timeout": config.command_timeout},
        pool_size=1,
        max_overflow=0,
        pool_timeout=config.command_timeout,
        hide_parameters=True,
        json_deserializer=orjson.loads,
    )
    event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
    return Database(engine, "sqlite", None, url.safe_description, ephemeral=config.ephemeral)


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # SQLite's own lower() folds ASCII only, so `q` would miss "ÄPFEL" for "äpfel" and titles
    # would sort apart from PostgreSQL's. Deterministic, so indexes on lower(title) may use it;
    # every connection must register it, or such an index would disagree with its table.
    dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL under WAL may lose the last commits on power loss; every acknowledged write
    # must survive, so each commit waits for its fsync.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _unicode_lower(value: object) -> object:
    """lower() for SQLite, folding case as PostgreSQL does in a UTF-8 locale."""
    return value.lower() if isinstance(value, str) else value


# SQLSTATE classes meaning "no usable connection": connection exceptions (08), rejected
# credentials (28), unknown database (3D000), too many connections (53300) and server
# shutdown or start-up (57P01-57P03). From a client's side they all read "unavailable".
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "28", "3D000", "53300", "57P01", "57P02", "57P03")


def is_database_unavailable(exc: BaseException) -> bool:
    """True for failures that mean "cannot use the database now", not bad SQL or data."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        return bool(exc.connection_invalidated) or (
            isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES)
        )
    # asyncpg raises these unwrapped while connecting (refused, stalled).
    return isinstance(exc, OSError | TimeoutError)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        # asyncpg reads a timestamptz as an aware datetime in UTC, but for the lowest one
        # (year 1), which it gives naive: one cheap check per value, not the general path.
        if dialect.driver == "asyncpg":
            return _aware_utc
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
