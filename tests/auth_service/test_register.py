"""POST /auth/register."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from sqlmodel import select

from auth_service.models import User
from shared.deps import service_state
from tests.support.tokens import bearer

GOOD = {"email": "ada@example.com", "password": "correct horse", "name": "Ada"}


async def test_register_signs_the_new_user_in(client: httpx2.AsyncClient) -> None:
    response = await client.post(
        "/auth/register",
        json={"email": "  Ada@Example.COM ", "password": "correct horse", "name": "  Ada  "},
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    assert set(body["user"]) == {"id", "email", "name", "created_at"}
    assert body["user"]["email"] == "ada@example.com"
    assert body["user"]["name"] == "Ada"
    me = await client.get("/api/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json() == {**body["user"], "identity_source": "account"}


async def test_name_is_optional_and_blank_means_none(client: httpx2.AsyncClient) -> None:
    without = await client.post("/auth/register", json={**GOOD, "name": None})
    blank = await client.post(
        "/auth/register", json={**GOOD, "email": "bob@example.com", "name": "   "}
    )

    assert without.status_code == blank.status_code == 201
    assert without.json()["user"]["name"] is None
    assert blank.json()["user"]["name"] is None


async def test_duplicate_email_is_409_whatever_its_case(client: httpx2.AsyncClient) -> None:
    first = await client.post("/auth/register", json=GOOD)
    second = await client.post("/auth/register", json={**GOOD, "email": " ADA@example.com"})

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json()["code"] == "email_taken"


async def test_concurrent_registrations_of_one_email_create_one_account(
    client: httpx2.AsyncClient, auth_app: FastAPI
) -> None:
    responses = await asyncio.gather(*(client.post("/auth/register", json=GOOD) for _ in range(5)))

    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409]
    async with service_state(auth_app).database.sessionmaker() as session:
        users = (await session.exec(select(User))).all()
    assert [u.email for u in users] == ["ada@example.com"]


@pytest.mark.parametrize("length", [8, 128])
async def test_password_length_limits_are_inclusive(
    client: httpx2.AsyncClient, length: int
) -> None:
    response = await client.post("/auth/register", json={**GOOD, "password": "p" * length})

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**GOOD, "password": "p" * 7}, "password"),
        ({**GOOD, "password": "p" * 129}, "password"),
        ({**GOOD, "email": "not-an-email"}, "email"),
        ({**GOOD, "email": "a@b@example.com"}, "email"),
        ({**GOOD, "email": "ada@"}, "email"),
        ({**GOOD, "email": "ada@exa mple.com"}, "email"),
        ({**GOOD, "email": "ada@example.com\u0000"}, "email"),
        ({**GOOD, "email": "ada@example.test"}, "email"),
        ({**GOOD, "email": ""}, "email"),
        ({**GOOD, "email": 42}, "email"),
        ({**GOOD, "name": "n" * 101}, "name"),
        ({"password": "correct horse"}, "email"),
        ({"email": "ada@example.com"}, "password"),
        ({**GOOD, "name": "Ada\u0000"}, "name"),
        ({**GOOD, "password": "long enough \u0000"}, "password"),
        ({**GOOD, "password": "long enough \ud800"}, "password"),
    ],
)
async def test_invalid_registration_is_422_naming_the_field(
    client: httpx2.AsyncClient, payload: dict[str, Any], field: str
) -> None:
    # ASCII-escaped JSON, so that lone surrogates can be sent at all.
    response = await client.post(
        "/auth/register",
        content=json.dumps(payload),
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 422
    assert field in {error["loc"][-1] for error in response.json()["detail"]}


@pytest.mark.parametrize("body", [b"{not json", b"[]", b"null", b'"text"'])
async def test_malformed_body_is_422(client: httpx2.AsyncClient, body: bytes) -> None:
    response = await client.post(
        "/auth/register", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


async def test_password_is_stored_as_an_argon2_hash(
    client: httpx2.AsyncClient, auth_app: FastAPI
) -> None:
    await client.post("/auth/register", json=GOOD)

    async with service_state(auth_app).database.sessionmaker() as session:
        user = (await session.exec(select(User))).one()
    assert user.hashed_password.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert GOOD["password"] not in user.hashed_password


async def test_trailing_slashes_are_served_as_without_them(client: httpx2.AsyncClient) -> None:
    registered = await client.post(
        "/auth/register/", json={"email": "slash@example.com", "password": "correct horse"}
    )
    signed_in = await client.post(
        "/auth/login/", json={"email": "slash@example.com", "password": "correct horse"}
    )
    token = signed_in.json()["access_token"]
    me = await client.get("/api/users/me/", headers={"Authorization": f"Bearer {token}"})

    assert registered.status_code == 201
    assert signed_in.status_code == 200
    assert me.json()["email"] == "slash@example.com"
