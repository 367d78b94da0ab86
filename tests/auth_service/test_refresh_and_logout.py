"""POST /auth/refresh and POST /auth/logout: rotation, reuse detection, revocation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx2
import jwt
import pytest
from fastapi import FastAPI
from sqlmodel import select

from auth_service.models import RefreshToken
from shared.deps import service_state
from tests.support.tokens import SECRET_KEY, bearer, mint


@pytest.fixture
async def session_tokens(client: httpx2.AsyncClient) -> dict[str, Any]:
    response = await client.post(
        "/auth/register",
        json={"email": "lin@example.com", "password": "correct horse", "name": "Lin"},
    )
    assert response.status_code == 201
    tokens: dict[str, Any] = response.json()
    return tokens


async def _refresh(client: httpx2.AsyncClient, token: str) -> httpx2.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


async def test_refresh_returns_a_new_working_pair(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any]
) -> None:
    response = await _refresh(client, session_tokens["refresh_token"])

    assert response.status_code == 200
    body = response.json()
    assert body["refresh_token"] != session_tokens["refresh_token"]
    assert body["access_token"] != session_tokens["access_token"]
    assert body["user"] == session_tokens["user"]
    me = await client.get("/api/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert (await _refresh(client, body["refresh_token"])).status_code == 200


async def test_access_token_carries_the_documented_claims(
    session_tokens: dict[str, Any],
) -> None:
    claims = jwt.decode(session_tokens["access_token"], SECRET_KEY, algorithms=["HS256"])

    assert set(claims) == {"sub", "email", "name", "iat", "exp", "jti", "type"}
    assert claims["sub"] == session_tokens["user"]["id"]
    assert claims["email"] == "lin@example.com"
    assert claims["name"] == "Lin"
    assert claims["type"] == "access"
    assert claims["exp"] - claims["iat"] == 15 * 60


async def test_a_used_refresh_token_is_dead_and_its_reuse_revokes_the_family(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any]
) -> None:
    original = session_tokens["refresh_token"]
    rotated = (await _refresh(client, original)).json()["refresh_token"]
    newest = (await _refresh(client, rotated)).json()["refresh_token"]

    replay = await _refresh(client, original)

    assert replay.status_code == 401
    assert replay.headers["www-authenticate"] == "Bearer"
    assert replay.json()["code"] == "refresh_token_reused"
    # Every token descended from that sign-in is dead now, the newest included.
    assert (await _refresh(client, newest)).status_code == 401


async def test_reuse_leaves_other_sign_ins_alone(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any]
) -> None:
    other = await client.post(
        "/auth/login", json={"email": "lin@example.com", "password": "correct horse"}
    )
    original = session_tokens["refresh_token"]
    await _refresh(client, original)

    await _refresh(client, original)

    assert (await _refresh(client, other.json()["refresh_token"])).status_code == 200


async def test_concurrent_use_of_one_refresh_token_succeeds_at_most_once(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any]
) -> None:
    responses = await asyncio.gather(
        *(_refresh(client, session_tokens["refresh_token"]) for _ in range(4))
    )

    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) <= 1
    assert codes.count(401) >= 3


async def test_logout_ends_the_session(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any]
) -> None:
    rotated = (await _refresh(client, session_tokens["refresh_token"])).json()["refresh_token"]

    response = await client.post("/auth/logout", json={"refresh_token": rotated})

    assert response.status_code == 204
    assert response.content == b""
    assert (await _refresh(client, rotated)).status_code == 401
    assert (await client.post("/auth/logout", json={"refresh_token": rotated})).status_code == 204


async def test_logout_of_one_session_keeps_the_others(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any]
) -> None:
    other = await client.post(
        "/auth/login", json={"email": "lin@example.com", "password": "correct horse"}
    )

    await client.post("/auth/logout", json={"refresh_token": session_tokens["refresh_token"]})

    assert (await _refresh(client, other.json()["refresh_token"])).status_code == 200


async def test_an_access_token_cannot_refresh_or_log_out(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any]
) -> None:
    access = session_tokens["access_token"]

    assert (await _refresh(client, access)).status_code == 401
    assert (await client.post("/auth/logout", json={"refresh_token": access})).status_code == 401


async def test_a_refresh_token_is_not_an_access_token(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any]
) -> None:
    response = await client.get("/api/users/me", headers=bearer(session_tokens["refresh_token"]))

    assert response.status_code == 401


async def test_expired_refresh_token_is_401(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any]
) -> None:
    claims = jwt.decode(session_tokens["refresh_token"], SECRET_KEY, algorithms=["HS256"])
    now = int(time.time())
    expired = mint(**{**claims, "iat": now - 7200, "exp": now - 3600})

    assert (await _refresh(client, expired)).status_code == 401


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        mint(type="refresh", fam="f", jti="j"),  # well signed, never issued
        mint("some-other-secret-of-enough-length-0123456789", type="refresh", fam="f", jti="j"),
    ],
)
async def test_unknown_or_forged_refresh_token_is_401(
    client: httpx2.AsyncClient, token: str
) -> None:
    assert (await _refresh(client, token)).status_code == 401


@pytest.mark.parametrize("body", [{}, {"refresh_token": ""}, {"refresh_token": "x" * 9000}])
async def test_malformed_refresh_body_is_422(
    client: httpx2.AsyncClient, body: dict[str, Any]
) -> None:
    assert (await client.post("/auth/refresh", json=body)).status_code == 422
    assert (await client.post("/auth/logout", json=body)).status_code == 422


async def test_only_hashes_of_refresh_tokens_are_stored(
    client: httpx2.AsyncClient, auth_app: FastAPI, session_tokens: dict[str, Any]
) -> None:
    async with service_state(auth_app).database.sessionmaker() as session:
        rows = (await session.exec(select(RefreshToken))).all()

    assert len(rows) == 1
    assert rows[0].token_hash != session_tokens["refresh_token"]
    assert len(rows[0].token_hash) == 64
