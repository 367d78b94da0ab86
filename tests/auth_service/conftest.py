"""The auth service on each backend, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr

from auth_service.app import create_app
from auth_service.models import metadata
from auth_service.settings import AuthSettings
from shared.deps import service_state
from tests.support.databases import Backend, drop_schema, empty_tables, unique_schema
from tests.support.tokens import BETTER_AUTH_SECRET, SECRET_KEY


def auth_settings(backend: Backend, **overrides: Any) -> AuthSettings:
    values: dict[str, Any] = {
        "secret_key": SecretStr(SECRET_KEY),
        "better_auth_secret": SecretStr(BETTER_AUTH_SECRET),
        "database_url": backend.secret_url,
        "data_dir": backend.data_dir,
        "auth_db_schema": unique_schema("auth"),
        # Suites share one app per module; only the rate-limit tests want real limits.
        "auth_rate_limit": "100000/minute",
        "login_failure_limit": "100000/minute",
        **overrides,
    }
    return AuthSettings(_env_file=None, **values)


@pytest.fixture(scope="module")
async def auth_app(backend: Backend) -> AsyncIterator[FastAPI]:
    settings = auth_settings(backend)
    app = create_app(settings)
    async with LifespanManager(app):
        yield app
    if backend.database_url:
        await drop_schema(backend.database_url, settings.auth_db_schema)


@pytest.fixture
async def client(auth_app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=auth_app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://auth.test") as client:
        yield client
    await empty_tables(service_state(auth_app).database, metadata)
