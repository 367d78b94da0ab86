"""Tokens of a real Better Auth server's JWT plugin, through the gateway to both services."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx2
import jwt
import pytest

from tests.better_auth.conftest import BetterAuthServer, api_trusting, better_auth_server
from tests.support.tokens import bearer

pytestmark = pytest.mark.usefixtures("better_auth_installed")


@pytest.fixture(scope="module")
def default_server(
    better_auth_installed: None, tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[BetterAuthServer]:
    """One server with the default key for the tests that only sign new users up on it."""
    with better_auth_server(tmp_path_factory.mktemp("better-auth"), postgres_url) as server:
        yield server


async def _use(gateway_url: str, token: str, user_id: str) -> list[httpx2.Response]:
    """Create and list a task, then read /api/users/me, with the token."""
    async with httpx2.AsyncClient(base_url=gateway_url, timeout=10) as client:
        created = await client.post(
            f"/api/{user_id}/tasks", json={"title": "from Better Auth"}, headers=bearer(token)
        )
        listed = await client.get(f"/api/{user_id}/tasks", headers=bearer(token))
        me = await client.get("/api/users/me", headers=bearer(token))
    return [created, listed, me]


def _checks(server: BetterAuthServer) -> dict[str, str]:
    # What a deployment sets for Better Auth's JWT plugin: its JWKS, issuer and audience
    # (both the app's base URL, without a trailing slash).
    return {
        "better_auth_jwks_url": server.jwks_url,
        "better_auth_issuer": server.base_url,
        "better_auth_audience": server.base_url,
    }


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "ES512", "RS256", "PS256"])
async def test_each_signing_algorithm_works_on_the_task_routes_and_me(
    tmp_path: Path, postgres_url: str, algorithm: str
) -> None:
    with better_auth_server(tmp_path, postgres_url, algorithm=algorithm) as server:
        token, user = await server.sign_up(name="Bea")
        async with api_trusting(tmp_path, **_checks(server)) as gateway_url:
            created, listed, me = await _use(gateway_url, token, user["id"])

    assert jwt.get_unverified_header(token)["alg"] == algorithm
    assert created.status_code == 201, created.text
    assert created.json()["user_id"] == user["id"]
    assert listed.headers["x-total-count"] == "1"
    assert me.status_code == 200, me.text
    assert me.json() == {
        "id": user["id"],
        "email": user["email"],
        "name": "Bea",
        "created_at": None,
        "identity_source": "token",
    }


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        pytest.param("better_auth_issuer", "{base}/", id="issuer-with-a-trailing-slash"),
        pytest.param("better_auth_issuer", "https://other.example", id="other-issuer"),
        pytest.param("better_auth_audience", "https://api.example", id="other-audience"),
    ],
)
async def test_issuer_and_audience_are_checked(
    default_server: BetterAuthServer, tmp_path: Path, setting: str, value: str
) -> None:
    server = default_server
    token, user = await server.sign_up()
    checks = {**_checks(server), setting: value.format(base=server.base_url)}
    async with api_trusting(tmp_path, **checks) as gateway_url:
        responses = await _use(gateway_url, token, user["id"])

    for response in responses:
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "invalid_token"
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_second_instances_keys_are_refused(
    default_server: BetterAuthServer, tmp_path: Path, postgres_url: str
) -> None:
    trusted = default_server
    with better_auth_server(tmp_path, postgres_url) as other:
        own_token, own_user = await trusted.sign_up()
        other_token, other_user = await other.sign_up()
        # Only the keys decide here: no issuer or audience is configured.
        async with api_trusting(tmp_path, better_auth_jwks_url=trusted.jwks_url) as gateway_url:
            accepted = await _use(gateway_url, own_token, own_user["id"])
            refused = await _use(gateway_url, other_token, other_user["id"])

    assert [r.status_code for r in accepted] == [201, 200, 200]
    assert [r.status_code for r in refused] == [401, 401, 401]
    assert {r.json()["code"] for r in refused} == {"invalid_token"}


async def test_a_rotated_key_works_on_its_first_use(tmp_path: Path, postgres_url: str) -> None:
    with better_auth_server(tmp_path, postgres_url, rotation_seconds=2) as server:
        first, user = await server.sign_up()
        async with api_trusting(tmp_path, **_checks(server)) as gateway_url:
            before = await _use(gateway_url, first, user["id"])
            await asyncio.sleep(2.5)  # the signing key expires; the next token gets a new one
            second = await server.sign_in(user["email"])
            # Moments after the gateway's services fetched the keys for the first token.
            after = await _use(gateway_url, second, user["id"])

    assert jwt.get_unverified_header(second)["kid"] != jwt.get_unverified_header(first)["kid"]
    assert [r.status_code for r in before] == [201, 200, 200]
    assert [r.status_code for r in after] == [201, 200, 200], [r.text for r in after]
