"""DATABASE_URL as operators paste it, read without the ORM.

A leaf module (standard library only): the settings of every process validate the URL with
it, and the gateway, which has no database, must not pay for SQLAlchemy to do so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypedDict, cast
from urllib.parse import parse_qsl, quote, unquote, urlsplit

DatabaseKind = Literal["postgresql", "sqlite"]
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
ChannelBinding = Literal["disable", "prefer", "require"]
PoolerMode = Literal["auto", "transaction", "session", "none"]
Transport = Literal["tcp", "websocket", "auto"]

SSL_MODES: tuple[SslMode, ...] = (
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
)
CHANNEL_BINDINGS: tuple[ChannelBinding, ...] = ("disable", "prefer", "require")
# libpq's spelling of "the operating system's trust store" (PostgreSQL 16).
SYSTEM_ROOT_CERT = "system"

_POSTGRES_SCHEMES = {
    "postgres",
    "postgresql",
    "postgresql+asyncpg",
    "postgresql+psycopg",
    "postgresql+psycopg2",
}
_SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"}
DEFAULT_PORT = 5432
# Supavisor (Supabase's pooler) runs transaction mode on this port, on any host name.
SUPAVISOR_TRANSACTION_PORT = 6543

_SHAPE = "DATABASE_URL must look like postgresql://user:password@host:5432/dbname"


@dataclass(frozen=True)
class DatabaseUrl:
    """The parts of a DATABASE_URL the engine uses; `password` never appears in a repr."""

    kind: DatabaseKind
    host: str = ""
    port: int = DEFAULT_PORT
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    # libpq's TLS parameters, as given (None: not given).
    sslmode: SslMode | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    channel_binding: ChannelBinding | None = None
    # Startup parameters sent to the server as they are (application_name, options).
    server_settings: dict[str, str] = field(default_factory=dict)
    # libpq's `connect_timeout`, in seconds.
    connect_timeout: float | None = None
    # Parameters no part of the connection reads; reported once, never silently lost.
    unused: tuple[str, ...] = ()

    @property
    def is_neon(self) -> bool:
        return self.host.endswith(".neon.tech")

    @property
    def safe_description(self) -> str:
        """Where the data lives, for logs: no password, no parameters."""
        if self.kind == "sqlite":
            return self.database or ""
        user = f"{quote(self.user, safe='')}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{user}{host}:{self.port}/{self.database or ''}"

    def pooler_mode(self, setting: PoolerMode) -> Literal["transaction", "session", "none"]:
        """What sits between us and PostgreSQL: DB_POOLER, or guessed from the address.

        Neon's `-pooler` hosts and Supavisor are PgBouncer-style transaction poolers; an IP
        address or a DNS alias of one cannot be recognised, so DB_POOLER says so instead.
        """
        if setting != "auto":
            return setting
        if self.kind != "postgresql":
            return "none"
        first_label = self.host.split(".", 1)[0]
        if (
            (self.is_neon and first_label.endswith("-pooler"))
            or self.host.endswith(".pooler.supabase.com")
            or self.port == SUPAVISOR_TRANSACTION_PORT
        ):
            return "transaction"
        return "none"


def parse_database_url(raw: str) -> DatabaseUrl:
    """Read a libpq-style URL (Neon's console, Heroku-style or SQLAlchemy-style).

    Raises ValueError with a message that starts with "DATABASE_URL " and never quotes the
    URL (it holds a password).
    """
    text = raw.strip()
    scheme, separator, _rest = text.partition("://")
    if not separator or not scheme:
        raise ValueError(_SHAPE)
    scheme = scheme.lower()
    if scheme in _SQLITE_SCHEMES:
        return _parse_sqlite(text)
    if scheme not in _POSTGRES_SCHEMES:
        raise ValueError("DATABASE_URL must be a postgresql:// (or sqlite://) URL")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        # urlsplit refuses a port that is not a number or is out of range alike.
        if _port_text(text).isdigit():
            raise ValueError("DATABASE_URL port must be between 1 and 65535") from None
        raise ValueError(_SHAPE) from None
    if not parts.hostname:
        raise ValueError(_SHAPE)
    if port is not None and not 0 < port < 65536:
        raise ValueError("DATABASE_URL port must be between 1 and 65535")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return DatabaseUrl(
        kind="postgresql",
        host=parts.hostname,
        port=port or DEFAULT_PORT,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        database=unquote(parts.path.lstrip("/")) or None,
        **_connection_parameters(query),
    )


def _port_text(text: str) -> str:
    authority = text.partition("://")[2].split("/", 1)[0].rpartition("@")[2]
    return authority.rpartition(":")[2] if not authority.endswith("]") else ""


def _parse_sqlite(text: str) -> DatabaseUrl:
    path = text.partition("://")[2]
    # sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy reads them.
    path = path.split("?", 1)[0]
    return DatabaseUrl(kind="sqlite", database=path[1:] if path.startswith("/") else path)


class _Parameters(TypedDict, total=False):
    sslmode: SslMode
    sslrootcert: str
    sslcert: str
    sslkey: str
    channel_binding: ChannelBinding
    server_settings: dict[str, str]
    connect_timeout: float
    unused: tuple[str, ...]


def _connection_parameters(query: dict[str, str]) -> _Parameters:
    """libpq's query parameters, checked; unknown ones are collected, not dropped silently."""
    values = _Parameters()
    # asyncpg's own spelling is `ssl`; dropping it as unknown would silently connect in clear.
    ssl_modes = {key: query.pop(key) for key in ("sslmode", "ssl") if key in query}
    for key, mode in ssl_modes.items():
        if mode not in SSL_MODES:
            raise ValueError(f"DATABASE_URL {key} must be one of {sorted(SSL_MODES)}")
    if len(set(ssl_modes.values())) > 1:
        raise ValueError("DATABASE_URL sslmode and ssl must agree")
    if ssl_modes:
        values["sslmode"] = cast("SslMode", next(iter(ssl_modes.values())))
    if query.get("sslrootcert"):
        values["sslrootcert"] = query.pop("sslrootcert")
    if query.get("sslcert"):
        values["sslcert"] = query.pop("sslcert")
    if query.get("sslkey"):
        values["sslkey"] = query.pop("sslkey")
    if "channel_binding" in query:
        binding = query.pop("channel_binding")
        if binding not in CHANNEL_BINDINGS:
            raise ValueError(
                f"DATABASE_URL channel_binding must be one of {list(CHANNEL_BINDINGS)}"
            )
        values["channel_binding"] = binding
    if "connect_timeout" in query:
        timeout = query.pop("connect_timeout")
        if not timeout.isdigit():
            raise ValueError("DATABASE_URL connect_timeout must be a whole number of seconds")
        # libpq treats 0 (and negative) as "wait forever"; a start-up must not hang.
        if int(timeout) > 0:
            values["connect_timeout"] = float(timeout)
    values["server_settings"] = {
        name: query.pop(name) for name in ("application_name", "options") if query.get(name)
    }
    values["unused"] = tuple(sorted(query))
    return values


@dataclass(frozen=True)
class DatabaseConfig:
    """What the engine factory needs from a service's settings, and nothing else."""

    url: DatabaseUrl | None
    # Each service keeps its own SQLite file here when `url` is None.
    data_dir: Path
    pool_size: int = 10
    max_overflow: int = 0
    connect_timeout: float = 10.0
    command_timeout: float = 5.0
    pooler: PoolerMode = "auto"
    # None: `auto` for Neon hosts, `tcp` for every other.
    transport: Transport | None = None
    # None: Neon's endpoint, wss://<host>/v2.
    websocket_url: str | None = None
    # The SQLite files will not survive a restart (reported by /health).
    ephemeral: bool = False
