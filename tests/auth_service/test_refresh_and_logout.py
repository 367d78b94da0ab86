"""POST /auth/refresh and POST /auth/logout: rotation, reuse detection, revocation."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import httpx2
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from sqlmodel import col, select

from auth_service.app import create_app
from auth_service.models import RefreshToken
from shared.db import utcnow
from shared.deps import service_state
from tests.auth_service.conftest import auth_settings
from tests.support.asgi import serving
from tests.support.databases import Backend, drop_schema
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


LIN = {"email": "lin@example.com", "password": "correct horse"}


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

    refresh = jwt.decode(session_tokens["refresh_token"], SECRET_KEY, algorithms=["HS256"])

    assert set(claims) == {"sub", "sid", "email", "name", "iat", "exp", "jti", "type"}
    # The sign-in it belongs to: the refresh token's family.
    assert claims["sid"] == refresh["fam"]
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


async def test_twenty_parallel_refreshes_of_one_token_all_get_usable_pairs(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any]
) -> None:
    # Two tabs, or a retry whose answer was lost: the same token arrives more than once.
    responses = await asyncio.gather(
        *(_refresh(client, session_tokens["refresh_token"]) for _ in range(20))
    )

    assert [r.status_code for r in responses] == [200] * 20
    pairs = [r.json() for r in responses]
    sign_ins = {_claims(pair["access_token"])["sid"] for pair in pairs}
    assert sign_ins == {_claims(session_tokens["access_token"])["sid"]}
    for pair in pairs:
        me = await client.get("/api/users/me", headers=bearer(pair["access_token"]))
        assert me.status_code == 200
    again = await asyncio.gather(*(_refresh(client, pair["refresh_token"]) for pair in pairs))
    assert [r.status_code for r in again] == [200] * 20


async def test_the_just_rotated_token_gets_a_pair_of_its_sign_in_within_the_grace(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any]
) -> None:
    original = session_tokens["refresh_token"]
    first = (await _refresh(client, original)).json()

    retried = await _refresh(client, original)

    assert retried.status_code == 200
    assert _claims(retried.json()["access_token"])["sid"] == _claims(first["access_token"])["sid"]
    assert (await _refresh(client, first["refresh_token"])).status_code == 200


async def test_the_just_rotated_token_revokes_the_sign_in_after_the_grace(
    client: httpx2.AsyncClient, auth_app: FastAPI, session_tokens: dict[str, Any]
) -> None:
    original = session_tokens["refresh_token"]
    rotated = (await _refresh(client, original)).json()["refresh_token"]
    # Rotated 31 s ago, just out of the default 30 s window.
    async with service_state(auth_app).database.sessionmaker() as session:
        await session.exec(
            update(RefreshToken)
            .where(col(RefreshToken.used_at).is_not(None))
            .values(used_at=utcnow() - timedelta(seconds=31))
        )
        await session.commit()

    replay = await _refresh(client, original)

    assert replay.status_code == 401
    assert replay.json()["code"] == "refresh_token_reused"
    assert (await _refresh(client, rotated)).status_code == 401


async def test_without_a_grace_a_second_use_revokes_at_once(backend: Backend) -> None:
    app = create_app(auth_settings(backend, refresh_reuse_grace_seconds=0))
    async with serving(app, "http://auth.test") as client:
        registered = await client.post(
            "/auth/register", json={"email": "nograce@example.com", "password": "correct horse"}
        )
        original = registered.json()["refresh_token"]
        rotated = (await _refresh(client, original)).json()["refresh_token"]

        replay = await _refresh(client, original)
        after = await _refresh(client, rotated)
    if backend.database_url:
        await drop_schema(backend.database_url, service_state(app).settings.auth_db_schema)

    assert replay.json()["code"] == "refresh_token_reused"
    assert after.status_code == 401


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, SECRET_KEY, algorithms=["HS256"])
    return claims


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
    if body:
        assert (await client.post("/auth/logout", json=body)).status_code == 422


async def test_logout_with_only_the_bearer_token_ends_that_sign_in(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any]
) -> None:
    other = (await client.post("/auth/login", json=LIN)).json()

    response = await client.post("/auth/logout", headers=bearer(session_tokens["access_token"]))

    assert response.status_code == 204
    assert (await _refresh(client, session_tokens["refresh_token"])).status_code == 401
    assert (await _refresh(client, other["refresh_token"])).status_code == 200
    # Access tokens are not revoked: they stay valid until they expire.
    me = await client.get("/api/users/me", headers=bearer(session_tokens["access_token"]))
    assert me.status_code == 200


async def test_logout_with_a_rotated_sign_ins_access_token_ends_the_whole_sign_in(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any]
) -> None:
    rotated = (await _refresh(client, session_tokens["refresh_token"])).json()

    await client.post("/auth/logout", headers=bearer(session_tokens["access_token"]))

    assert (await _refresh(client, rotated["refresh_token"])).status_code == 401


@pytest.mark.parametrize("how", ["bearer", "refresh_token"])
async def test_logout_everywhere_ends_every_sign_in_of_the_user(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any], how: str
) -> None:
    other = (await client.post("/auth/login", json=LIN)).json()
    stranger = (
        await client.post(
            "/auth/register", json={"email": "kim@example.com", "password": "correct horse"}
        )
    ).json()
    if how == "bearer":
        response = await client.post(
            "/auth/logout",
            json={"everywhere": True},
            headers=bearer(session_tokens["access_token"]),
        )
    else:
        response = await client.post(
            "/auth/logout",
            json={"everywhere": True, "refresh_token": session_tokens["refresh_token"]},
        )

    assert response.status_code == 204
    assert (await _refresh(client, session_tokens["refresh_token"])).status_code == 401
    assert (await _refresh(client, other["refresh_token"])).status_code == 401
    assert (await _refresh(client, stranger["refresh_token"])).status_code == 200


async def test_logout_with_a_refresh_token_needs_no_valid_bearer(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any]
) -> None:
    expired = mint(sub=session_tokens["user"]["id"], lifetime=-60)

    response = await client.post(
        "/auth/logout",
        json={"refresh_token": session_tokens["refresh_token"]},
        headers=bearer(expired),
    )

    assert response.status_code == 204
    assert (await _refresh(client, session_tokens["refresh_token"])).status_code == 401


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "not_authenticated"),
        (bearer("not-a-token"), "invalid_token"),
        # Well signed, but not by this service's sign-in: no sign-in to end.
        (bearer(mint(sub="frontend-user")), "invalid_token"),
    ],
)
async def test_logout_without_a_sign_in_to_end_is_401(
    client: httpx2.AsyncClient, headers: dict[str, str], code: str
) -> None:
    response = await client.post("/auth/logout", headers=headers)

    assert response.status_code == 401
    assert response.json()["code"] == code


async def test_only_hashes_of_refresh_tokens_are_stored(
    client: httpx2.AsyncClient, auth_app: FastAPI, session_tokens: dict[str, Any]
) -> None:
    async with service_state(auth_app).database.sessionmaker() as session:
        rows = (await session.exec(select(RefreshToken))).all()

    assert len(rows) == 1
    assert rows[0].token_hash != session_tokens["refresh_token"]
    assert len(rows[0].token_hash) == 64


@pytest.mark.parametrize("everywhere", [0, 0.0, 1, "yes", "false", None])
async def test_logout_everywhere_takes_only_a_json_boolean(
    client: httpx2.AsyncClient, session_tokens: dict[str, Any], everywhere: Any
) -> None:
    response = await client.post(
        "/auth/logout",
        json={"everywhere": everywhere},
        headers=bearer(session_tokens["access_token"]),
    )

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert (await _refresh(client, session_tokens["refresh_token"])).status_code == 200
