"""Settings of the auth service."""

from __future__ import annotations

from typing import Annotated

from limits import parse
from pydantic import AfterValidator, BeforeValidator, Field

from shared.settings import SchemaName, ServiceSettings
from shared.validators import blank_to_none


def _rate_limit(value: str) -> str:
    """A limit in the `limits` notation (`60/minute`, `5/15 minutes`), checked at start-up."""
    try:
        item = parse(value)
    except ValueError:
        raise ValueError("must look like 60/minute or 5/15 minutes") from None
    if item.amount < 1:
        raise ValueError("must allow at least one request")
    return value


def _storage_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("redis://", "rediss://", "memory://")):
        raise ValueError("must be a redis:// or rediss:// URL (or memory://)")
    return value


RateLimit = Annotated[str, AfterValidator(_rate_limit)]


class AuthSettings(ServiceSettings):
    auth_db_schema: SchemaName = "auth"
    access_token_expire_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_expire_days: int = Field(default=7, ge=1, le=365)
    # How long a rotated refresh token still gets a pair of its sign-in when presented
    # again (two tabs refreshing at once, a retry whose answer was lost). 0 turns it off.
    refresh_reuse_grace_seconds: int = Field(default=30, ge=0, le=300)
    # Per client IP, on register, login and refresh.
    auth_rate_limit: RateLimit = "60/minute"
    # Failed logins per account and client IP: an attacker elsewhere cannot lock a user out.
    login_failure_limit: RateLimit = "5/15 minutes"
    # Unset: counters live in this process. Redis shares them between instances.
    rate_limit_storage_url: Annotated[
        str | None, BeforeValidator(blank_to_none), AfterValidator(_storage_url)
    ] = None
    # Seconds: the longest a Redis call may take (connect or answer) before the request goes
    # through unlimited, and how long a failed Redis is then left alone.
    rate_limit_storage_timeout: float = Field(default=2.0, gt=0, le=30)
    rate_limit_storage_retry_seconds: float = Field(default=5.0, gt=0, le=300)
