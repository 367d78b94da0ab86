"""Database access for both services: one engine factory (sessions: shared/deps.py).

PostgreSQL (Neon or any other) goes through asyncpg; with no DATABASE_URL each service keeps
its data in its own SQLite file. Models declare no schema: on PostgreSQL the engine maps them
into the service's schema, so the same models run on SQLite, which has none.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import DateTime, event, text
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator
from sqlmodel.ext.asyncio.session import AsyncSession

if TYPE_CHECKING:
    from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)

DatabaseKind = Literal["postgresql", "sqlite"]

_POSTGRES_DRIVERS = {
    "postgres",
    "postgresql",
    "postgresql+asyncpg",
    "postgresql+psycopg",
    "postgresql+psycopg2",
}
_SQLITE_DRIVERS = {"sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"}
_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

# Deterministic constraint names, so migrations and models agree on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Neon suspends idle computes after about five minutes; recycle pooled connections before that.
POOL_RECYCLE_SECONDS = 240


@dataclass(frozen=True)
class ConnectionTarget:
    """A DATABASE_URL translated for SQLAlchemy's async drivers."""

    url: URL
    connect_args: dict[str, Any]
    kind: DatabaseKind

    @property
    def uses_transaction_pooler(self) -> bool:
        """Neon's `-pooler` hosts are PgBouncer in transaction mode."""
        return self.kind == "postgresql" and "-pooler" in (self.url.host or "")

    @property
    def safe_description(self) -> str:
        return self.url.render_as_string(hide_password=True)


def translate_database_url(raw: str) -> ConnectionTarget:
    """Accept a URL as Neon's console prints it (libpq style) and make it asyncpg's.

    `sslmode` (or `ssl`) becomes asyncpg's `ssl`; libpq-only parameters asyncpg would reject
    (`channel_binding`, `options`, ...) are dropped. Raises ValueError on anything else, with
    a message that starts with "DATABASE_URL " and never quotes the URL (it holds a password).
    """
    try:
        # make_url raises ValueError itself on a port that is not a number.
        url = make_url(raw.strip())
    except (ArgumentError, ValueError):
        raise ValueError(
            "DATABASE_URL must look like postgresql://user:password@host:5432/dbname"
        ) from None

    if url.drivername in _SQLITE_DRIVERS:
        return ConnectionTarget(url.set(drivername="sqlite+aiosqlite"), {}, "sqlite")
    if url.drivername not in _POSTGRES_DRIVERS:
        raise ValueError("DATABASE_URL must be a postgresql:// (or sqlite://) URL")
    if url.port is not None and not 0 < url.port < 65536:
        raise ValueError("DATABASE_URL port must be between 1 and 65535")

    query = dict(url.query)
    connect_args: dict[str, Any] = {}
    # asyncpg's own spelling is `ssl`; dropping it as unknown would silently connect in clear.
    ssl_modes = {name: query.pop(name) for name in ("sslmode", "ssl") if name in query}
    for name, mode in ssl_modes.items():
        if not isinstance(mode, str) or mode not in _SSL_MODES:
            raise ValueError(f"DATABASE_URL {name} must be one of {sorted(_SSL_MODES)}")
    if len(set(ssl_modes.values())) > 1:
        raise ValueError("DATABASE_URL sslmode and ssl must agree")
    if ssl_modes:
        connect_args["ssl"] = next(iter(ssl_modes.values()))
    application_name = query.pop("application_name", None)
    if isinstance(application_name, str):
        connect_args["server_settings"] = {"application_name": application_name}
    if query:
        logger.info("Ignoring DATABASE_URL parameters asyncpg does not take: %s", sorted(query))
    url = url.set(drivername="postgresql+asyncpg", query={})
    return ConnectionTarget(url, connect_args, "postgresql")


@dataclass
class Database:
    """An engine and its session factory, plus what a service needs to know about them."""

    engine: AsyncEngine
    kind: DatabaseKind
    schema: str | None
    location: str
    sessionmaker: async_sessionmaker[AsyncSession] = field(init=False)

    def __post_init__(self) -> None:
        self.sessionmaker = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )

    async def ping(self) -> None:
        """Run a real query; raises if the database cannot answer."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def create_database(settings: ServiceSettings, *, schema: str, name: str) -> Database:
    """The engine for one service: its PostgreSQL schema, or its own SQLite file."""
    if settings.database_url is None:
        path = settings.data_dir / f"{name}.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        target = ConnectionTarget(URL.create("sqlite+aiosqlite", database=str(path)), {}, "sqlite")
    else:
        target = translate_database_url(settings.database_url.get_secret_value())

    if target.kind == "sqlite":
        return _create_sqlite(target, settings)
    return _create_postgres(target, settings, schema)


def _create_postgres(target: ConnectionTarget, settings: ServiceSettings, schema: str) -> Database:
    connect_args: dict[str, Any] = {
        **target.connect_args,
        "timeout": settings.db_connect_timeout,
        "command_timeout": settings.db_command_timeout,
    }
    if target.uses_transaction_pooler:
        # PgBouncer may hand each statement of a session to a different server connection:
        # no statement caches, and statement names that cannot collide across clients.
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = _unique_statement_name
    engine = create_async_engine(
        target.url,
        connect_args=connect_args,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # Waiting for a busy pool is bounded like a query, not like a (cold) connect.
        pool_timeout=settings.db_command_timeout,
        pool_recycle=POOL_RECYCLE_SECONDS,
        pool_pre_ping=True,
        # Parameters (password hashes, emails) stay out of error messages and so out of logs.
        hide_parameters=True,
        execution_options={"schema_translate_map": {None: schema}},
    )
    return Database(engine, "postgresql", schema, target.safe_description)


def _create_sqlite(target: ConnectionTarget, settings: ServiceSettings) -> Database:
    # One connection per process: SQLite allows one writer at a time anyway, and a single
    # connection cannot deadlock with itself upgrading a read lock ("database is locked").
    engine = create_async_engine(
        target.url,
        connect_args={"timeout": settings.db_command_timeout},
        pool_size=1,
        max_overflow=0,
        pool_timeout=settings.db_command_timeout,
        hide_parameters=True,
    )
    event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
    return Database(engine, "sqlite", None, target.url.database or "")


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


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


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

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
