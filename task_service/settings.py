"""Settings of the task service."""

from __future__ import annotations

from shared.settings import SchemaName, ServiceSettings


class TaskSettings(ServiceSettings):
    task_db_schema: SchemaName = "tasks"
