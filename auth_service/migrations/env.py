"""Alembic environment of the auth service (schema `auth`)."""

from auth_service.models import metadata
from auth_service.settings import AuthSettings
from shared.db import Database, create_database
from shared.migrations import run_env
from shared.settings import load_settings


def _open_database() -> Database:
    settings = load_settings(AuthSettings)
    return create_database(settings.database_config(), schema=settings.auth_db_schema, name="auth")


run_env(metadata, _open_database)
