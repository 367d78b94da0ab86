"""Alembic environment of the task service (schema `tasks`)."""

from sqlalchemy import MetaData

from shared.db import Database, create_database
from shared.migrations import run_env

# The models and the settings are imported only when used: an upgrade at start-up, which
# runs in a process of its own, needs neither, and they are most of its import time.


def _metadata() -> MetaData:
    from task_service.models import metadata

    return metadata


def _open_database() -> Database:
    from shared.settings import load_settings
    from task_service.settings import TaskSettings

    settings = load_settings(TaskSettings)
    return create_database(settings.database_config(), schema=settings.task_db_schema, name="tasks")


run_env(_metadata, _open_database)
