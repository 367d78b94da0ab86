"""What the auth service writes to its logs at DEBUG: never a secret."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from asgi_lifespan import LifespanManager

from auth_service.app import create_app
from auth_service.security import hash_token
from tests.auth_service.conftest import auth_settings
from tests.support.databases import Backend, drop_schema, rewrite_url
from tests.support.tokens import bearer

EMAIL = "secret-keeper@example.com"
PASSWORD = "user-pass-Hb22vN"
DB_PASSWORD = "db-pass-Zq81xK"


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def backend_with_password(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "postgres":
        # The test server trusts local connections, so any password is accepted.
        url = rewrite_url(request.getfixturevalue("postgres_url"), password=DB_PASSWORD)
        return Backend("postgres", url, tmp_path)
    return Backend("sqlite", None, tmp_path)


async def test_a_full_session_at_debug_logs_no_secret(
    backend_with_password: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    settings = auth_settings(backend_with_password, log_level="DEBUG")
    with caplog.at_level("DEBUG"):
        app = create_app(settings)
        async with LifespanManager(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://a") as client:
                credentials = {"email": EMAIL, "password": PASSWORD}
                registered = (await client.post("/auth/register", json=credentials)).json()
                logged_in = (await client.post("/auth/login", json=credentials)).json()
                refreshed = (
                    await client.post(
                        "/auth/refresh", json={"refresh_token": logged_in["refresh_token"]}
                    )
                ).json()
                me = await client.get("/api/users/me", headers=bearer(refreshed["access_token"]))
                logout = await client.post(
                    "/auth/logout", json={"refresh_token": refreshed["refresh_token"]}
                )
    if backend_with_password.database_url:
        await drop_schema(backend_with_password.database_url, settings.auth_db_schema)

    assert me.status_code == 200
    assert logout.status_code == 204
    # The flow was logged at all (a silent log would pass the checks below trivially).
    assert "POST /auth/refresh 200" in caplog.text
    secrets = {
        "user password": PASSWORD,
        "password hash": "$argon2",
        "database password": DB_PASSWORD,
        "email": EMAIL,
    }
    for body in (registered, logged_in, refreshed):
        secrets[f"access token {len(secrets)}"] = body["access_token"]
        secrets[f"refresh token {len(secrets)}"] = body["refresh_token"]
        secrets[f"refresh token hash {len(secrets)}"] = hash_token(body["refresh_token"])
    leaked = [name for name, secret in secrets.items() if secret in caplog.text]
    assert leaked == []
