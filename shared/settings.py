"""Settings every process shares, read from the environment (and `.env` when present).

Each service subclasses these; nothing here knows about a particular service.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.database_url import DatabaseConfig, PoolerMode, Transport, parse_database_url
from shared.validators import blank_to_none

AppEnv = Literal["development", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# Used only outside production, with a loud warning: lets the services of a checkout agree on a
# signing key with zero set-up. `app.py` replaces it with a persisted random key for the stack.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-deploy-0000"  # noqa: S105 (public on purpose)
MIN_SECRET_BYTES = 32


def _split_comma_list(value: Any) -> Any:
    """Read `a, b` as a list; a JSON array is accepted too."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


# pydantic-settings would JSON-decode a list field from the environment and reject `a,b`;
# NoDecode hands the raw string to the validator instead.
CommaSeparatedList = Annotated[list[str], NoDecode, BeforeValidator(_split_comma_list)]


# A PostgreSQL schema name we can put in SQL without quoting surprises.
SchemaName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]


def _usable_database_url(value: SecretStr | None) -> SecretStr | None:
    """Refuse at start-up a URL the engine could not use, instead of crashing on it later."""
    if value is not None:
        try:
            parse_database_url(value.get_secret_value())
        except ValueError as exc:
            # The error is reported under the variable's name already; the message never
            # quotes the URL, which holds a password.
            raise ValueError(str(exc).removeprefix("DATABASE_URL ")) from None
    return value


OptionalText = Annotated[str | None, BeforeValidator(blank_to_none)]
HttpUrlText = Annotated[
    Annotated[str, Field(pattern=r"^https?://\S+$")] | None, BeforeValidator(blank_to_none)
]


# `DATABASE_URL=` (blank) means unset: SQLite in development, refused in production.
DatabaseUrl = Annotated[
    SecretStr | None, BeforeValidator(blank_to_none), AfterValidator(_usable_database_url)
]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


# Persistent storage on a Hugging Face Space (and the conventional volume in a container).
PERSISTENT_DATA_DIR = Path("/data")


def _writable_directory(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def default_data_dir(persistent: Path | None = None) -> Path:
    """`/data` when it is a writable directory (persistent storage on a Space), else `./data`."""
    persistent = persistent or PERSISTENT_DATA_DIR
    if _writable_directory(persistent):
        return persistent
    return Path("data").resolve()


def unusable_persistent_storage(persistent: Path | None = None) -> str | None:
    """Why `/data` exists but cannot hold the data, or None."""
    persistent = persistent or PERSISTENT_DATA_DIR
    if not persistent.exists() or _writable_directory(persistent):
        return None
    return (
        f"{persistent} exists but is not a writable directory: data goes to "
        f"{default_data_dir(persistent)} instead, which is lost when the container restarts. "
        f"Make {persistent} writable for this user, or set DATA_DIR to persistent storage"
    )


def storage_is_ephemeral(data_dir: Path, persistent: Path | None = None) -> bool:
    """SQLite files outside the persistent volume, where one was expected (an unusable
    `/data`, or a Space, whose disk is reset on every restart)."""
    persistent = persistent or PERSISTENT_DATA_DIR
    if data_dir.resolve().is_relative_to(persistent):
        return False
    return unusable_persistent_storage(persistent) is not None or bool(os.environ.get("SPACE_ID"))


class CommonSettings(BaseSettings):
    """What every process reads, the gateway included."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    app_env: AppEnv = "development"
    log_level: Annotated[LogLevel, BeforeValidator(_upper)] = "INFO"
    # `json`: one JSON object per line, for log shippers; `text`: for people.
    log_format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = "text"
    # What this process's HTTP server accepts from any client (shared/server.py).
    max_header_bytes: int = Field(default=32_768, ge=1_024, le=1_048_576)
    header_timeout: float = Field(default=10.0, gt=0, le=600)
    max_connections: int = Field(default=2_048, ge=1, le=1_000_000)

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"


class ServiceSettings(CommonSettings):
    """What a service with a database and tokens reads (auth and task services)."""

    database_url: DatabaseUrl = None
    data_dir: Path = Field(default_factory=default_data_dir)
    secret_key: SecretStr | None = None
    # Tokens of the frontend: HS256 with its secret, and Better Auth's JWT plugin, whose keys
    # are at <frontend>/api/auth/jwks. A URL without a scheme would only fail at the first
    # token, as a 503 for everyone: refuse it at start-up.
    better_auth_secret: SecretStr | None = None
    better_auth_jwks_url: HttpUrlText = None
    better_auth_issuer: OptionalText = None
    better_auth_audience: OptionalText = None

    # Connections kept open per service. Overflow connections close as soon as they are
    # returned to a full pool, so a load that needs them opens one PostgreSQL session after
    # another (a tenth of the service's CPU in a profile): the pool holds them all instead.
    # Idle connections do not keep a Neon compute awake; only queries do.
    db_pool_size: int = Field(default=10, ge=1, le=100)
    db_max_overflow: int = Field(default=0, ge=0, le=100)
    # Opening a connection may wait out a suspended Neon compute's wake-up (a few seconds);
    # a query, or a wait for a pooled connection, is bounded tighter, so a database that
    # stalls is a 503 in seconds.
    db_connect_timeout: float = Field(default=10.0, gt=0, le=120)
    db_command_timeout: float = Field(default=5.0, gt=0, le=600)
    # What sits between the services and PostgreSQL; `auto` recognises Neon's `-pooler`
    # hosts and Supavisor. Set it when a pooler is reached by IP address or a DNS alias.
    db_pooler: PoolerMode = "auto"
    # `websocket` carries connections over wss://<host>/v2 (port 443) where port 5432 is
    # closed; unset means `auto` for Neon hosts and `tcp` for the rest.
    database_transport: Annotated[Transport | None, BeforeValidator(blank_to_none)] = None
    database_websocket_url: Annotated[str | None, BeforeValidator(blank_to_none)] = None

    def database_config(self) -> DatabaseConfig:
        """The values the engine factory takes (it never sees the rest of the settings)."""
        url = self.database_url
        return DatabaseConfig(
            url=parse_database_url(url.get_secret_value()) if url is not None else None,
            data_dir=self.data_dir,
            pool_size=self.db_pool_size,
            max_overflow=self.db_max_overflow,
            connect_timeout=self.db_connect_timeout,
            command_timeout=self.db_command_timeout,
            pooler=self.db_pooler,
            transport=self.database_transport,
            websocket_url=self.database_websocket_url,
            ephemeral=url is None and storage_is_ephemeral(self.data_dir),
        )

    @model_validator(mode="after")
    def _require_production_values(self) -> Self:
        if not self.is_production:
            return self
        problems = []
        if self.database_url is None:
            problems.append("DATABASE_URL is not set (production needs PostgreSQL)")
        key = self.secret_key.get_secret_value() if self.secret_key else ""
        if len(key.encode()) < MIN_SECRET_BYTES:
            problems.append(f"SECRET_KEY must be set to at least {MIN_SECRET_BYTES} bytes")
        if problems:
            raise ValueError("APP_ENV=production but " + "; ".join(problems))
        return self

    @property
    def signing_key(self) -> str:
        """The key that signs and verifies this deployment's own tokens."""
        if self.secret_key and self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value()
        return DEV_SECRET_KEY

    def startup_warnings(self) -> list[str]:
        """Configuration that works but must not reach production unnoticed."""
        warnings = []
        if self.signing_key == DEV_SECRET_KEY:
            warnings.append(
                "SECRET_KEY is not set: using a PUBLIC development key. Anyone can forge tokens. "
                "Set SECRET_KEY (32+ random bytes) before exposing this service."
            )
        elif len(self.signing_key.encode()) < MIN_SECRET_BYTES:
            warnings.append(
                f"SECRET_KEY is shorter than {MIN_SECRET_BYTES} bytes: use a longer one."
            )
        if self.database_url is None and (problem := unusable_persistent_storage()):
            warnings.append(f"{problem} (DATA_DIR is {self.data_dir}).")
        if self.database_url is None:
            warnings.append(
                f"DATABASE_URL is not set: data lives in local SQLite files under {self.data_dir}. "
                "Set DATABASE_URL to a PostgreSQL database for durable, shared storage."
            )
        return warnings


SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def validation_problems(exc: ValidationError) -> list[str]:
    """Each bad variable and what is wrong, without echoing values (they may be secrets)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        location = "_".join(str(part) for part in error["loc"]).upper()
        problems.append(f"{location}: {message}" if location else message)
    return problems


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad variable, without echoing values (they may be secrets)."""
    return "; ".join(validation_problems(exc))


def load_settings(settings_class: type[SettingsT]) -> SettingsT:
    """Read settings from the environment, or exit with one line saying what is wrong."""
    try:
        return settings_class()
    except ValidationError as exc:
        raise SystemExit(f"Invalid configuration: {describe_validation_error(exc)}") from None
