"""Builds the task service's ASGI app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.db import create_database
from shared.deps import ServiceState
from shared.service import create_service_app
from shared.settings import load_settings
from shared.tokens import JWKSCache, TokenVerifier
from task_service.routes import router
from task_service.settings import TaskSettings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def create_verifier(settings: TaskSettings) -> TokenVerifier:
    """Our own and the frontend's HS256 tokens, plus Better Auth's JWKS-signed ones if set."""
    url = settings.better_auth_jwks_url
    frontend = settings.better_auth_secret
    return TokenVerifier(
        [settings.signing_key],
        frontend_secret=frontend.get_secret_value() if frontend else None,
        jwks=JWKSCache(url) if url else None,
        issuer=settings.better_auth_issuer,
        audience=settings.better_auth_audience,
    )


def create_app(settings: TaskSettings | None = None) -> FastAPI:
    """The task service; settings come from the environment unless given."""
    settings = settings or load_settings(TaskSettings)
    state = ServiceState(
        settings=settings,
        database=create_database(settings, schema=settings.task_db_schema, name="tasks"),
        verifier=create_verifier(settings),
    )
    return create_service_app(
        state,
        name="tasks",
        title="Todo task service",
        description="Each user's tasks: create, list, filter, update, complete and delete.",
        migrations_dir=MIGRATIONS_DIR,
        routers=[router],
        openapi_tags=[{"name": "tasks", "description": "The signed-in user's tasks"}],
    )
