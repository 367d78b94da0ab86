"""Builds the auth service's ASGI app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from auth_service.deps import AuthState
from auth_service.rate_limit import AuthRateLimiter
from auth_service.routes import router
from auth_service.settings import AuthSettings
from shared.db import create_database
from shared.service import create_service_app
from shared.settings import load_settings
from shared.tokens import create_verifier

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    """The auth service; settings come from the environment unless given."""
    settings = settings or load_settings(AuthSettings)
    state = AuthState(
        settings=settings,
        database=create_database(
            settings.database_config(), schema=settings.auth_db_schema, name="auth"
        ),
        verifier=create_verifier(settings),
        rate_limiter=AuthRateLimiter(settings),
    )
    return create_service_app(
        state,
        name="auth",
        title="Todo auth service",
        description="Accounts, sign-in and tokens.",
        migrations_dir=MIGRATIONS_DIR,
        routers=[router],
        openapi_tags=[
            {"name": "auth", "description": "Register, sign in, refresh and sign out"},
            {"name": "users", "description": "The signed-in account"},
        ],
    )
