"""Settings of the task service."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from shared.settings import SchemaName, ServiceSettings
from shared.validators import blank_to_none

OptionalText = Annotated[str | None, BeforeValidator(blank_to_none)]
HttpUrlText = Annotated[
    Annotated[str, Field(pattern=r"^https?://\S+$")] | None, BeforeValidator(blank_to_none)
]


class TaskSettings(ServiceSettings):
    task_db_schema: SchemaName = "tasks"
    # Better Auth's JWT plugin publishes its keys at <frontend>/api/auth/jwks. A URL without a
    # scheme would only fail at the first token, as a 503 for everyone: refuse it at start-up.
    better_auth_jwks_url: HttpUrlText = None
    better_auth_issuer: OptionalText = None
    better_auth_audience: OptionalText = None
