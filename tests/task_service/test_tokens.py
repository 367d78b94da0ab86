"""Which bearer tokens the task service accepts, and what it answers to the rest."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from pydantic import SecretStr

import shared.auth
from shared.auth import RefusalLog
from tests.support.better_auth import FakeBetterAuth, serve_better_auth
from tests.support.databases import Backend
from tests.support.http_server import free_port
from tests.support.tokens import BETTER_AUTH_SECRET, SECRET_KEY, bearer, mint, unsigned
from tests.task_service.conftest import (
    ALICE,
    BOB,
    ROUTE_IDS,
    ROUTES,
    client_for,
    running_app,
    task_settings,
    tasks_url,
)


def _assert_unauthorized(response: httpx2.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=ROUTE_IDS)
async def test_every_route_requires_a_token(
    client: httpx2.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    _assert_unauthorized(await client.request(method, path, json=body))


@pytest.mark.parametrize(
    "path",
    [tasks_url(BOB), tasks_url(task_id="abc"), tasks_url("u" * 300), tasks_url(task_id=0)],
)
async def test_authentication_is_checked_before_anything_else(
    client: httpx2.AsyncClient, path: str
) -> None:
    _assert_unauthorized(await client.get(path))


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic YWxpY2U6cHc="},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Bearer " + "a" * 9000},
        {"Authorization": "Token " + mint(sub=ALICE)},
    ],
)
async def test_malformed_credentials_are_401(
    client: httpx2.AsyncClient, headers: dict[str, str]
) -> None:
    _assert_unauthorized(await client.get(tasks_url(), headers=headers))


# (name, token, why the log says it was refused)
REFUSED: list[tuple[str, Callable[[], str], str]] = [
    ("alg-none", lambda: unsigned(sub=ALICE), "unsupported algorithm: alg 'none'"),
    (
        "forged",
        lambda: mint("wrong-secret-0123456789abcdef-0123456789ab", sub=ALICE),
        "bad signature",
    ),
    ("expired", lambda: mint(sub=ALICE, lifetime=-120), "expired"),
    ("no-expiry", lambda: mint(sub=ALICE, exp=None), "missing claim: exp"),
    (
        "issued-in-future",
        lambda: mint(sub=ALICE, iat=int(time.time()) + 3600),
        "not yet valid",
    ),
    ("refresh-type", lambda: mint(sub=ALICE, type="refresh"), "not an access token: type"),
    ("no-subject", lambda: mint(sub=None), "no subject"),
    ("blank-subject", lambda: mint(sub="   "), "bad subject"),
    # Our auth service always writes `sub`: the frontend's fallbacks are not for its tokens.
    ("own-secret-id-only", lambda: mint(sub=None, id=ALICE), "no subject"),
    ("own-secret-userid-only", lambda: mint(sub=None, userId=ALICE), "no subject"),
    (
        "frontend-empty-sub-with-id",
        lambda: mint(BETTER_AUTH_SECRET, sub="", id=ALICE, type=None),
        "bad subject",
    ),
    (
        "frontend-secret-refresh-type",
        lambda: mint(BETTER_AUTH_SECRET, sub=ALICE, type="refresh"),
        "not an access token",
    ),
    (
        "hs512",
        lambda: jwt.encode({"sub": ALICE, "exp": time.time() + 60}, "k" * 64, "HS512"),
        "unsupported algorithm: alg 'HS512'",
    ),
]


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch) -> RefusalLog:
    """A fresh refusal log, so earlier tests' refusals do not use up its lines."""
    fresh = RefusalLog()
    monkeypatch.setattr(shared.auth, "refusal_log", fresh)
    return fresh


def _refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "shared.auth"]


@pytest.mark.parametrize(
    ("make", "reason"), [(m, r) for _, m, r in REFUSED], ids=[n for n, _, _ in REFUSED]
)
async def test_unacceptable_tokens_are_401_and_the_log_says_why(
    client: httpx2.AsyncClient,
    refusals: RefusalLog,
    caplog: pytest.LogCaptureFixture,
    make: Callable[[], str],
    reason: str,
) -> None:
    token = make()

    with caplog.at_level(logging.INFO, logger="shared.auth"):
        response = await client.get(tasks_url(), headers=bearer(token))

    _assert_unauthorized(response)
    expired = reason == "expired"
    assert response.json()["code"] == ("token_expired" if expired else "invalid_token")
    assert response.json()["detail"] in {"Invalid access token", "The access token has expired"}
    (line,) = _refusal_lines(caplog)
    assert line.startswith(f"Token refused: {reason}")
    assert token not in caplog.text
    for part in token.split("."):
        assert not part or part not in caplog.text, "no part of the token reaches the log"


async def test_a_flood_of_bad_tokens_logs_a_few_lines_and_counts_the_rest(
    client: httpx2.AsyncClient,
    refusals: RefusalLog,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forged = mint("wrong-secret-0123456789abcdef-0123456789ab", sub=ALICE)

    with caplog.at_level(logging.INFO, logger="shared.auth"):
        for _ in range(refusals.burst + 25):
            await client.get(tasks_url(), headers=bearer(forged))
        monkeypatch.setattr(refusals, "window", 0.0)  # as if the minute had passed
        await client.get(tasks_url(), headers=bearer(forged))

    lines = _refusal_lines(caplog)
    assert len(lines) == refusals.burst + 1
    assert lines[-1].endswith("(and 25 more since the last such line)")


async def test_own_auth_service_token_is_accepted(client: httpx2.AsyncClient) -> None:
    token = mint(SECRET_KEY, sub=ALICE, email="alice@example.com", name="Alice")

    response = await client.post(tasks_url(), json={"title": "x"}, headers=bearer(token))

    assert response.status_code == 201
    assert response.json()["user_id"] == ALICE


@pytest.mark.parametrize("claim", ["sub", "id", "userId"])
async def test_frontend_token_signed_with_the_better_auth_secret_is_accepted(
    client: httpx2.AsyncClient, claim: str
) -> None:
    # What a Next.js frontend mints itself: no `type` claim, the user id under any of three names.
    claims: dict[str, Any] = {"sub": None, "type": None, claim: "ba-user-7"}
    token = mint(BETTER_AUTH_SECRET, **claims)

    created = await client.post(
        tasks_url("ba-user-7"), json={"title": "from the frontend"}, headers=bearer(token)
    )
    listed = await client.get(tasks_url("ba-user-7"), headers=bearer(token))

    assert created.status_code == 201
    assert created.json()["user_id"] == "ba-user-7"
    assert [task["title"] for task in listed.json()] == ["from the frontend"]


async def test_with_one_secret_for_both_a_token_may_name_the_user_in_id(
    backend: Backend, tmp_path: Path
) -> None:
    settings = task_settings(backend, data_dir=tmp_path, better_auth_secret=SecretStr(SECRET_KEY))
    token = mint(SECRET_KEY, sub=None, type=None, id="ba-user-7")

    async with running_app(settings) as app, client_for(app) as client:
        response = await client.get(tasks_url("ba-user-7"), headers=bearer(token))

    assert response.status_code == 200


async def test_eddsa_token_is_refused_when_no_jwks_url_is_configured(
    client: httpx2.AsyncClient,
) -> None:
    key = Ed25519PrivateKey.generate()
    token = jwt.encode({"sub": ALICE, "exp": time.time() + 60}, key, "EdDSA", headers={"kid": "k"})

    _assert_unauthorized(await client.get(tasks_url(), headers=bearer(token)))


ISSUER = "https://frontend.example"
AUDIENCE = "https://frontend.example"


@pytest.fixture(scope="module")
async def better_auth(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[FakeBetterAuth, FastAPI]]:
    """Better Auth's JWKS on loopback, and a task service configured to trust it."""
    async with serve_better_auth("k1") as (fake, jwks_url):
        settings = task_settings(
            backend,
            data_dir=tmp_path_factory.mktemp("jwks"),
            better_auth_jwks_url=jwks_url,
            better_auth_issuer=ISSUER,
            better_auth_audience=AUDIENCE,
        )
        async with running_app(settings) as app:
            yield fake, app


async def test_better_auth_jwks_signed_token_is_accepted(
    better_auth: tuple[FakeBetterAuth, FastAPI],
) -> None:
    fake, app = better_auth
    token = fake.token("k1", sub="ba-42", iss=ISSUER, aud=AUDIENCE)

    async with client_for(app) as client:
        created = await client.post(tasks_url("ba-42"), json={"title": "x"}, headers=bearer(token))
        listed = await client.get(tasks_url("ba-42"), headers=bearer(token))

    assert created.status_code == 201
    assert created.json()["user_id"] == "ba-42"
    assert listed.headers["x-total-count"] == "1"


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"iss": "https://evil.example", "aud": AUDIENCE}, id="wrong-issuer"),
        pytest.param({"iss": ISSUER, "aud": "https://other.example"}, id="wrong-audience"),
        pytest.param({"aud": AUDIENCE}, id="no-issuer"),
        pytest.param({"iss": ISSUER}, id="no-audience"),
        pytest.param({"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) - 120}, id="expired"),
    ],
)
async def test_better_auth_token_with_wrong_claims_is_401(
    better_auth: tuple[FakeBetterAuth, FastAPI], claims: dict[str, Any]
) -> None:
    fake, app = better_auth

    async with client_for(app) as client:
        response = await client.get(
            tasks_url("ba-user"), headers=bearer(fake.token("k1", **claims))
        )

    _assert_unauthorized(response)


@pytest.mark.parametrize(
    ("claims", "logged"),
    [
        pytest.param(
            {"iss": ISSUER + "/", "aud": AUDIENCE},
            f"wrong issuer: expected '{ISSUER}', got '{ISSUER}/'",
            id="issuer-with-a-trailing-slash",
        ),
        pytest.param(
            {"iss": ISSUER, "aud": ["https://other.example"]},
            f"wrong audience: expected '{AUDIENCE}', got ['https://other.example']",
            id="other-audience",
        ),
        pytest.param(
            {"iss": ISSUER, "aud": AUDIENCE, "exp": None}, "missing claim: exp", id="no-exp"
        ),
    ],
)
async def test_the_log_names_what_was_expected_and_what_the_token_had(
    better_auth: tuple[FakeBetterAuth, FastAPI],
    refusals: RefusalLog,
    caplog: pytest.LogCaptureFixture,
    claims: dict[str, Any],
    logged: str,
) -> None:
    fake, app = better_auth

    with caplog.at_level(logging.INFO, logger="shared.auth"):
        async with client_for(app) as client:
            response = await client.get(
                tasks_url("ba-user"), headers=bearer(fake.token("k1", **claims))
            )

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
    assert _refusal_lines(caplog) == [f"Token refused: {logged}"]


async def test_an_unknown_key_id_is_logged_with_the_key_id(
    better_auth: tuple[FakeBetterAuth, FastAPI],
    refusals: RefusalLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _fake, app = better_auth
    impostor = FakeBetterAuth()
    impostor.add_key("made-up")

    with caplog.at_level(logging.INFO, logger="shared.auth"):
        async with client_for(app) as client:
            response = await client.get(
                tasks_url("ba-user"), headers=bearer(impostor.token("made-up", iss=ISSUER))
            )

    assert response.json()["code"] == "invalid_token"
    assert _refusal_lines(caplog) == [
        "Token refused: unknown signing key: kid 'made-up' is not published"
    ]


async def test_eddsa_token_signed_by_an_unpublished_key_is_401(
    better_auth: tuple[FakeBetterAuth, FastAPI],
) -> None:
    _fake, app = better_auth
    impostor = FakeBetterAuth()
    impostor.add_key("k1")  # the same key id, another key
    token = impostor.token("k1", iss=ISSUER, aud=AUDIENCE)

    async with client_for(app) as client:
        response = await client.get(tasks_url("ba-user"), headers=bearer(token))

    _assert_unauthorized(response)


async def test_hs256_tokens_still_work_when_a_jwks_is_configured(
    better_auth: tuple[FakeBetterAuth, FastAPI],
) -> None:
    _fake, app = better_auth

    async with client_for(app) as client:
        response = await client.get(tasks_url(), headers=bearer(mint(sub=ALICE)))

    assert response.status_code == 200


@pytest.fixture(scope="module")
async def unreachable_jwks_app(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FastAPI]:
    settings = task_settings(
        backend,
        data_dir=tmp_path_factory.mktemp("no-jwks"),
        better_auth_jwks_url=f"http://127.0.0.1:{free_port()}/api/auth/jwks",
    )
    async with running_app(settings) as app:
        yield app


async def test_unreachable_jwks_is_a_503_not_a_401(unreachable_jwks_app: FastAPI) -> None:
    key = Ed25519PrivateKey.generate()
    token = jwt.encode({"sub": ALICE, "exp": time.time() + 60}, key, "EdDSA", headers={"kid": "k"})

    async with client_for(unreachable_jwks_app) as client:
        response = await client.get(tasks_url(), headers=bearer(token))
        own_token = await client.get(tasks_url(), headers=bearer(mint(sub=ALICE)))

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert isinstance(response.json()["detail"], str)
    assert own_token.status_code == 200


async def test_unknown_key_id_while_the_jwks_fails_is_a_503(
    backend: Backend, tmp_path: Path
) -> None:
    async with serve_better_auth("k1") as (fake, jwks_url):
        settings = task_settings(backend, data_dir=tmp_path, better_auth_jwks_url=jwks_url)
        async with running_app(settings) as app, client_for(app) as client:
            before = await client.get(tasks_url("ba-user"), headers=bearer(fake.token("k1")))
            fake.add_key("k2")
            fake.up = False
            response = await client.get(tasks_url("ba-user"), headers=bearer(fake.token("k2")))

    assert before.status_code == 200
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
