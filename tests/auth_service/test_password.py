"""POST /auth/password: change the password, end the other sign-ins."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from tests.support.tokens import bearer, mint

EMAIL = "pat@example.com"
OLD = "correct horse"
NEW = "battery staple"


@pytest.fixture
async def signed_in(client: httpx2.AsyncClient) -> dict[str, Any]:
    response = await client.post("/auth/register", json={"email": EMAIL, "password": OLD})
    assert response.status_code == 201
    tokens: dict[str, Any] = response.json()
    return tokens


async def _login(client: httpx2.AsyncClient, password: str) -> httpx2.Response:
    return await client.post("/auth/login", json={"email": EMAIL, "password": password})


async def _refresh(client: httpx2.AsyncClient, token: str) -> httpx2.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


async def _change(
    client: httpx2.AsyncClient, signed_in: dict[str, Any], current: str
) -> httpx2.Response:
    """Ask, as the signed-in user, to change the password from `current` to NEW."""
    return await client.post(
        "/auth/password",
        json={"current_password": current, "new_password": NEW},
        headers=bearer(signed_in["access_token"]),
    )


async def test_changing_the_password_ends_every_other_sign_in(
    client: httpx2.AsyncClient, signed_in: dict[str, Any]
) -> None:
    other = (await _login(client, OLD)).json()

    response = await _change(client, signed_in, OLD)

    assert response.status_code == 204
    assert (await _login(client, OLD)).json()["code"] == "invalid_credentials"
    assert (await _login(client, NEW)).status_code == 200
    assert (await _refresh(client, other["refresh_token"])).status_code == 401
    # The sign-in that changed it carries on.
    assert (await _refresh(client, signed_in["refresh_token"])).status_code == 200


async def test_a_wrong_current_password_is_401_and_changes_nothing(
    client: httpx2.AsyncClient, signed_in: dict[str, Any]
) -> None:
    other = (await _login(client, OLD)).json()

    response = await _change(client, signed_in, "not the password")

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"
    assert (await _login(client, OLD)).status_code == 200
    assert (await _refresh(client, other["refresh_token"])).status_code == 200


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "not_authenticated"), (bearer(mint(sub="nobody-here")), "invalid_token")],
)
async def test_changing_a_password_needs_an_account_of_this_service(
    client: httpx2.AsyncClient, headers: dict[str, str], code: str
) -> None:
    response = await client.post(
        "/auth/password", json={"current_password": OLD, "new_password": NEW}, headers=headers
    )

    assert response.status_code == 401
    assert response.json()["code"] == code


@pytest.mark.parametrize(
    "body",
    [
        {"current_password": OLD},
        {"current_password": OLD, "new_password": "short"},
        {"current_password": OLD, "new_password": "p" * 129},
        {"current_password": "", "new_password": NEW},
    ],
)
async def test_a_bad_password_change_is_422(
    client: httpx2.AsyncClient, signed_in: dict[str, Any], body: dict[str, str]
) -> None:
    response = await client.post(
        "/auth/password", json=body, headers=bearer(signed_in["access_token"])
    )

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
