"""What reaches the logs when a query fails, on a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request

from shared.db import create_database
from shared.errors import database_error
from shared.settings import ServiceSettings


@pytest.mark.postgres
async def test_a_failing_query_logs_its_statement_but_never_its_values(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ServiceSettings(
        _env_file=None, database_url=SecretStr(postgres_url), data_dir=tmp_path
    )
    database = create_database(settings, schema="public", name="check")
    try:
        async with database.engine.connect() as connection:
            with pytest.raises(DBAPIError) as failure:
                await connection.execute(
                    text("SELECT CAST(:value AS integer)"), {"value": "hash-of-a-password"}
                )
    finally:
        await database.dispose()
    request = Request({"type": "http", "method": "POST", "path": "/x", "headers": []})

    response = await database_error(request, failure.value)

    assert response.status_code == 500
    assert json.loads(bytes(response.body)) == {"detail": "Internal Server Error"}
    assert "SELECT CAST($1 AS integer)" in caplog.text
    assert "hash-of-a-password" not in caplog.text
