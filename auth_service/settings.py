"""Settings of the auth service."""

from __future__ import annotations

from pydantic import Field

from shared.settings import SchemaName, ServiceSettings


class AuthSettings(ServiceSettings):
    auth_db_schema: SchemaName = "auth"
    access_token_expire_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_expire_days: int = Field(default=7, ge=1, le=365)
