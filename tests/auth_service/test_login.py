"""POST /auth/login."""

from __future__ import annotations

import json
import unicodedata
from typing import Any, Literal

import bcrypt
import httpx2
import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from auth_service import security
from auth_service.models import User
from shared.db import Database
from shared.deps import service_state
from tests.support.tokens import bearer

EMAIL = "grace@example.com"
# x@example.com in full-width letters.
FULL_WIDTH = "x@" + "".join(chr(ord(c) + 0xFEE0) for c in "example") + ".com"
PASSWORD = "correct horse battery"


@pytest.fixture
async def account(client: httpx2.AsyncClient) -> dict[str, Any]:
    response = await client.post("/auth/register", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 201
    user: dict[str, Any] = response.json()["user"]
    return user


async def test_login_with_json_returns_a_token_pair(
    client: httpx2.AsyncClient, account: dict[str, Any]
) -> None:
    response = await client.post("/auth/login", json={"email": EMAIL, "password": PASSWORD})

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["user"] == account
    me = await client.get("/api/users/me", headers=bearer(body["access_token"]))
    assert me.json()["id"] == account["id"]


async def test_the_token_endpoint_signs_in_with_the_oauth2_form_of_the_docs_page(
    client: httpx2.AsyncClient, account: dict[str, Any]
) -> None:
    response = await client.post(
        "/auth/token",
        data={"grant_type": "password", "username": EMAIL, "password": PASSWORD},
    )

    assert response.status_code == 200
    assert response.json()["user"]["id"] == account["id"]


async def test_login_and_token_answer_a_wrong_password_alike(
    client: httpx2.AsyncClient, account: dict[str, Any]
) -> None:
    login = await client.post("/auth/login", json={"email": EMAIL, "password": "wrong pass"})
    token = await client.post("/auth/token", data={"username": EMAIL, "password": "wrong pass"})

    assert login.status_code == token.status_code == 401
    assert login.json() == token.json()
    assert login.json()["code"] == "invalid_credentials"
    assert login.headers["www-authenticate"] == token.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "data",
    [
        {"grant_type": "client_credentials", "username": EMAIL, "password": PASSWORD},
        {"username": EMAIL},
        {"username": EMAIL, "password": "p" * 129},
        {"username": "nul\u0000@example.com", "password": PASSWORD},
    ],
)
async def test_a_bad_token_form_is_422(
    client: httpx2.AsyncClient, account: dict[str, Any], data: dict[str, str]
) -> None:
    response = await client.post("/auth/token", data=data)

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_the_token_endpoint_takes_no_json(
    client: httpx2.AsyncClient, account: dict[str, Any]
) -> None:
    response = await client.post("/auth/token", json={"username": EMAIL, "password": PASSWORD})

    assert response.status_code == 422


async def test_openapi_documents_json_login_and_the_form_token_endpoint(
    client: httpx2.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()

    login = spec["paths"]["/auth/login"]["post"]["requestBody"]["content"]
    token = spec["paths"]["/auth/token"]["post"]["requestBody"]["content"]
    assert set(login) == {"application/json"}
    assert set(token) == {"application/x-www-form-urlencoded"}
    flow = spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]
    assert flow["tokenUrl"] == "/auth/token"


@pytest.mark.parametrize(
    ("registered", "typed"),
    [
        # IDNA (punycode) domain: stored as Unicode.
        ("x@xn--bcher-kva.com", "x@xn--bcher-kva.com"),
        ("x@xn--bcher-kva.com", "x@bücher.com"),
        # Full-width letters and a ligature: UTS-46 maps them to plain ones.
        (FULL_WIDTH, FULL_WIDTH),
        ("x@ﬁsh.com", "x@ﬁsh.com"),
        ("x@ﬁsh.com", "X@FISH.com"),
    ],
)
async def test_an_email_signs_in_as_it_registered(
    client: httpx2.AsyncClient, registered: str, typed: str
) -> None:
    created = await client.post("/auth/register", json={"email": registered, "password": PASSWORD})
    login = await client.post("/auth/login", json={"email": typed, "password": PASSWORD})
    token = await client.post("/auth/token", data={"username": typed, "password": PASSWORD})
    again = await client.post("/auth/register", json={"email": typed, "password": PASSWORD})

    assert created.status_code == 201
    assert login.status_code == token.status_code == 200
    assert login.json()["user"]["id"] == created.json()["user"]["id"]
    assert again.json()["code"] == "email_taken"


async def test_email_is_matched_whatever_its_case_and_spacing(
    client: httpx2.AsyncClient, account: dict[str, Any]
) -> None:
    response = await client.post(
        "/auth/login", json={"email": "  GRACE@Example.com ", "password": PASSWORD}
    )

    assert response.status_code == 200


@pytest.mark.parametrize("form", ["NFC", "NFD"])
async def test_email_is_matched_whatever_its_unicode_normal_form(
    client: httpx2.AsyncClient, form: Literal["NFC", "NFD"]
) -> None:
    email = "José.Núñez@example.com"
    registered = await client.post(
        "/auth/register",
        json={"email": unicodedata.normalize("NFD", email), "password": PASSWORD},
    )

    response = await client.post(
        "/auth/login", json={"email": unicodedata.normalize(form, email), "password": PASSWORD}
    )

    assert registered.status_code == 201
    assert response.status_code == 200
    assert response.json()["user"]["email"] == unicodedata.normalize("NFC", email.lower())


async def test_wrong_password_and_unknown_email_get_the_same_401(
    client: httpx2.AsyncClient, account: dict[str, Any]
) -> None:
    wrong = await client.post("/auth/login", json={"email": EMAIL, "password": "wrong pass"})
    unknown = await client.post(
        "/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "invalid_credentials"
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"] == "Bearer"


async def test_unknown_email_still_costs_a_password_verification(
    client: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    real_verify = security.password_context.verify

    def spy(secret: str | bytes, hashed: str) -> bool:
        checked.append(hashed)
        return bool(real_verify(secret, hashed))

    monkeypatch.setattr(security.password_context, "verify", spy)

    response = await client.post(
        "/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )

    assert response.status_code == 401
    assert len(checked) == 1
    assert checked[0].startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def test_password_is_checked_without_holding_a_database_connection(
    auth_app: FastAPI,
    client: httpx2.AsyncClient,
    account: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Hashing takes tens of milliseconds; on SQLite the pool is one connection, so holding it
    # meanwhile would make every other request of the service wait for the hash.
    database: Database = service_state(auth_app).database
    held: list[int] = []
    real_verify = security._verify

    def spy(password: str, hashed: str | None) -> tuple[bool, str | None]:
        held.append(database.engine.pool.checkedout())  # type: ignore[attr-defined]
        return real_verify(password, hashed)

    monkeypatch.setattr(security, "_verify", spy)

    response = await client.post("/auth/login", json={"email": EMAIL, "password": PASSWORD})

    assert response.status_code == 200
    assert held == [0]


async def _insert_user_with_hash(app: FastAPI, email: str, hashed: str) -> None:
    async with service_state(app).database.sessionmaker() as session:
        session.add(User(email=email, hashed_password=hashed))
        await session.commit()


async def _stored_hash(app: FastAPI, email: str) -> str:
    database: Database = service_state(app).database
    async with database.sessionmaker() as session:
        user = (await session.exec(select(User).where(col(User.email) == email))).one()
    return user.hashed_password


@pytest.mark.parametrize("password", ["legacy password", "long " * 20])
async def test_bcrypt_hash_from_an_earlier_system_verifies_and_is_upgraded(
    client: httpx2.AsyncClient, auth_app: FastAPI, password: str
) -> None:
    # bcrypt only ever looked at the first 72 bytes; hashes made that way must keep working.
    legacy = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
    await _insert_user_with_hash(auth_app, "legacy@example.com", legacy)

    response = await client.post(
        "/auth/login", json={"email": "legacy@example.com", "password": password}
    )

    assert response.status_code == 200
    upgraded = await _stored_hash(auth_app, "legacy@example.com")
    assert upgraded.startswith("$argon2id$")
    again = await client.post(
        "/auth/login", json={"email": "legacy@example.com", "password": password}
    )
    assert again.status_code == 200


async def test_wrong_password_against_a_bcrypt_hash_is_401_and_keeps_the_hash(
    client: httpx2.AsyncClient, auth_app: FastAPI
) -> None:
    legacy = bcrypt.hashpw(b"legacy password", bcrypt.gensalt(rounds=4)).decode()
    await _insert_user_with_hash(auth_app, "legacy@example.com", legacy)

    response = await client.post(
        "/auth/login", json={"email": "legacy@example.com", "password": "not it at all"}
    )

    assert response.status_code == 401
    assert await _stored_hash(auth_app, "legacy@example.com") == legacy


async def test_corrupt_stored_hash_is_a_plain_401(
    client: httpx2.AsyncClient, auth_app: FastAPI
) -> None:
    await _insert_user_with_hash(auth_app, "broken@example.com", "not-a-hash")

    response = await client.post(
        "/auth/login", json={"email": "broken@example.com", "password": "whatever1"}
    )

    assert response.status_code == 401


@pytest.mark.parametrize(
    ("kwargs", "location"),
    [
        ({"json": {"email": EMAIL}}, "password"),
        ({"json": {"password": PASSWORD}}, "email"),
        ({"json": {"email": "", "password": PASSWORD}}, "email"),
        ({"json": {"email": EMAIL, "password": ""}}, "password"),
        ({"json": {"email": EMAIL, "password": "p" * 129}}, "password"),
        ({"json": {"email": "nul\u0000@example.com", "password": PASSWORD}}, "email"),
        (
            {
                # A lone surrogate: sent ASCII-escaped, as only a JSON escape can carry it.
                "content": json.dumps({"email": EMAIL, "password": "\ud800"}),
                "headers": {"content-type": "application/json"},
            },
            "password",
        ),
        ({"json": [EMAIL, PASSWORD]}, "body"),
        # The login route reads JSON only: forms go to /auth/token.
        ({"data": {"email": EMAIL, "password": PASSWORD}}, "body"),
        # FastAPI names the offset at which the JSON stops parsing.
        ({"content": b"{oops", "headers": {"content-type": "application/json"}}, "1"),
        ({"content": b"email=x", "headers": {"content-type": "text/plain"}}, "body"),
        ({"content": b""}, "body"),
    ],
)
async def test_malformed_login_is_422_in_fastapi_shape(
    client: httpx2.AsyncClient, kwargs: dict[str, Any], location: str
) -> None:
    response = await client.post("/auth/login", **kwargs)

    assert response.status_code == 422
    errors = response.json()["detail"]
    assert errors
    assert all(error["loc"][0] == "body" for error in errors)
    assert location in {str(error["loc"][-1]) for error in errors}


@pytest.mark.parametrize("field", ["username", "password"])
async def test_a_file_in_a_token_form_is_422_without_echoing_the_upload(
    client: httpx2.AsyncClient, field: str
) -> None:
    form = {"username": EMAIL, "password": PASSWORD}
    del form[field]

    response = await client.post(
        "/auth/token", data=form, files={field: ("f.txt", b"file content", "text/plain")}
    )

    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "string_type",
                "loc": ["body", field],
                "msg": "Input should be a valid string",
            }
        ],
        "code": "validation_error",
    }
