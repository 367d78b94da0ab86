"""Alembic environment of the auth service (schema `auth`)."""

from sqlalchemy import MetaData

from shared.db import Database, create_database
from shared.migrations import run_env

# The models and the settings are imported only when used: an upgrade at start-up, which
# runs in a process of its own, needs neither, and they are most of its import time.


def _metadata() -> MetaData:
    from auth_service.models import metadata

    return metadata


def _open_database() -> Database:
    from auth_service.settings import AuthSettings
    from shared.settings import load_settings

    settings = load_settings(AuthSettings)
    return create_database(settings.database_config(), schema=settings.auth_db_schema, name="auth")


run_env(_metadata, _open_database)
