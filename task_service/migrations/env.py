"""Alembic environment of the task service (schema `tasks`)."""

from shared.db import Database, create_database
from shared.migrations import run_env
from shared.settings import load_settings
from task_service.models import metadata
from task_service.settings import TaskSettings


def _open_database() -> Database:
    settings = load_settings(TaskSettings)
    return create_database(settings.database_config(), schema=settings.task_db_schema, name="tasks")


run_env(metadata, _open_database)
