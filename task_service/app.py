"""Builds the task service's ASGI app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.middleware import Middleware

from shared.db import create_database
from shared.deps import ServiceState
from shared.service import create_service_app
from shared.settings import load_settings
from shared.tokens import create_verifier
from task_service.routes import ListShortcut, router
from task_service.settings import TaskSettings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def create_app(settings: TaskSettings | None = None) -> FastAPI:
    """The task service; settings come from the environment unless given."""
    settings = settings or load_settings(TaskSettings)
    state = ServiceState(
        settings=settings,
        database=create_database(
            settings.database_config(), schema=settings.task_db_schema, name="tasks"
        ),
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
        router_middleware=[Middleware(ListShortcut)],
    )
