"""GET /api/users/me and what tokens it accepts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from auth_service.app import create_app
from auth_service.models import User
from shared.deps import service_state
from tests.auth_service.conftest import auth_settings
from tests.support.asgi import serving
from tests.support.better_auth import serve_better_auth
from tests.support.databases import Backend, drop_schema
from tests.support.tokens import BETTER_AUTH_SECRET, SECRET_KEY, bearer, mint, unsigned


@pytest.fixture
async def user_id(client: httpx2.AsyncClient) -> str:
    response = await client.post(
        "/auth/register", json={"email": "kay@example.com", "password": "correct horse"}
    )
    assert response.status_code == 201
    return str(response.json()["user"]["id"])


async def test_me_returns_the_signed_in_account(client: httpx2.AsyncClient, user_id: str) -> None:
    response = await client.get("/api/users/me", headers=bearer(mint(sub=user_id)))

    assert response.status_code == 200
    assert response.json()["id"] == user_id
    assert response.json()["email"] == "kay@example.com"
    assert response.json()["identity_source"] == "account"


@pytest.mark.parametrize("claim", ["sub", "id", "userId"])
async def test_me_accepts_the_frontend_tokens_the_task_routes_accept(
    client: httpx2.AsyncClient, user_id: str, claim: str
) -> None:
    # What a Next.js frontend mints with BETTER_AUTH_SECRET: no `type`, the user under any name.
    claims: dict[str, Any] = {"sub": None, "type": None, claim: user_id}
    token = mint(BETTER_AUTH_SECRET, **claims)

    response = await client.get("/api/users/me", headers=bearer(token))

    assert response.status_code == 200
    assert response.json()["email"] == "kay@example.com"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic a2F5OnB3"},
        {"Authorization": "Bearer not.a.jwt"},
    ],
)
async def test_missing_or_malformed_credentials_are_401_with_a_challenge(
    client: httpx2.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/api/users/me", headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda uid: unsigned(sub=uid), id="alg-none"),
        pytest.param(lambda uid: mint(sub=uid, lifetime=-120), id="expired"),
        pytest.param(
            lambda uid: mint("wrong-secret-0123456789abcdef-0123456789ab", sub=uid), id="forged"
        ),
        pytest.param(lambda uid: mint(sub=uid, type="refresh"), id="refresh-type"),
        pytest.param(lambda uid: mint(sub=None), id="no-subject"),
        pytest.param(lambda uid: mint(sub=uid, exp=None), id="no-expiry"),
        pytest.param(lambda uid: mint(sub=uid, iat=int(time.time()) + 3600), id="issued-in-future"),
    ],
)
async def test_unacceptable_tokens_are_401(
    client: httpx2.AsyncClient, user_id: str, make_token: object
) -> None:
    assert callable(make_token)
    response = await client.get("/api/users/me", headers=bearer(make_token(user_id)))

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_token_of_a_deleted_account_is_401(
    client: httpx2.AsyncClient, auth_app: FastAPI, user_id: str
) -> None:
    async with service_state(auth_app).database.sessionmaker() as session:
        user = await session.get(User, user_id)
        assert user is not None
        await session.delete(user)
        await session.commit()

    response = await client.get("/api/users/me", headers=bearer(mint(sub=user_id)))

    assert response.status_code == 401


async def test_token_signed_with_the_secret_is_valid_within_leeway(
    client: httpx2.AsyncClient, user_id: str
) -> None:
    # Clocks of two machines drift: a token that expired seconds ago still passes.
    token = mint(SECRET_KEY, sub=user_id, lifetime=-5)

    assert (await client.get("/api/users/me", headers=bearer(token))).status_code == 200


async def test_a_frontend_user_without_an_account_is_described_by_the_token(
    client: httpx2.AsyncClient,
) -> None:
    token = mint(
        BETTER_AUTH_SECRET, sub=None, type=None, id="ba-7", email="ba@example.com", name="Bea"
    )

    response = await client.get("/api/users/me", headers=bearer(token))

    assert response.status_code == 200
    assert response.json() == {
        "id": "ba-7",
        "email": "ba@example.com",
        "name": "Bea",
        "created_at": None,
        "identity_source": "token",
    }


async def test_a_frontend_token_without_email_or_name_still_names_its_user(
    client: httpx2.AsyncClient,
) -> None:
    token = mint(BETTER_AUTH_SECRET, sub="ba-8", type=None, email=7)

    response = await client.get("/api/users/me", headers=bearer(token))

    assert response.status_code == 200
    assert response.json()["id"] == "ba-8"
    assert (response.json()["email"], response.json()["name"]) == (None, None)


async def test_an_own_token_for_a_user_that_never_existed_is_401(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.get("/api/users/me", headers=bearer(mint(sub="nobody")))

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


async def test_a_better_auth_jwks_token_works_on_me(backend: Backend, tmp_path: Path) -> None:
    async with serve_better_auth("k1") as (fake, jwks_url):
        settings = auth_settings(backend, data_dir=tmp_path, better_auth_jwks_url=jwks_url)
        app = create_app(settings)
        async with serving(app, "http://auth.test") as client:
            token = fake.token("k1", sub="ba-9", email="nine@example.com", name="Nine")
            response = await client.get("/api/users/me", headers=bearer(token))
        if backend.database_url:
            await drop_schema(backend.database_url, settings.auth_db_schema)

    assert response.status_code == 200
    assert response.json()["identity_source"] == "token"
    assert response.json()["email"] == "nine@example.com"
