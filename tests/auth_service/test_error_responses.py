"""Error responses the service builds itself: 405 and 422 on odd input."""

from __future__ import annotations

import json

import httpx2
import pytest

JSON = {"content-type": "application/json"}


async def test_405_names_only_methods_the_path_serves(client: httpx2.AsyncClient) -> None:
    head = await client.head("/api/users/me")
    delete = await client.delete("/api/users/me")

    # HEAD is served wherever GET is: here it is refused for want of a token, as GET is.
    assert head.status_code == 401
    assert head.content == b""
    assert delete.status_code == 405
    assert delete.headers["allow"] == "GET"
    assert delete.json() == {"detail": "Method Not Allowed", "code": "method_not_allowed"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/auth/register", b'{"email": NaN, "password": "correct horse"}'),
        ("/auth/register", b'{"email": "ada@example.com", "password": Infinity}'),
        ("/auth/login", b'{"email": "ada@example.com", "password": -Infinity}'),
        ("/auth/login", b"NaN"),
        ("/auth/refresh", b'{"refresh_token": NaN}'),
        ("/auth/logout", b'{"refresh_token": [1, {"x": Infinity}]}'),
        ("/auth/logout", b"-Infinity"),
    ],
)
async def test_non_finite_numbers_in_a_body_are_a_422_echoing_them_as_text(
    client: httpx2.AsyncClient, path: str, body: bytes
) -> None:
    # Not JSON, yet Python's parser reads them as floats that JSON cannot carry back.
    response = await client.post(path, content=body, headers=JSON)

    assert response.status_code == 422
    echoed = json.dumps([error.get("input") for error in response.json()["detail"]])
    assert any(word in echoed for word in ('"NaN"', '"Infinity"', '"-Infinity"'))


@pytest.mark.parametrize("depth", [700, 1000, 100_000])
async def test_deeply_nested_json_gets_the_same_4xx_from_login_as_from_register(
    client: httpx2.AsyncClient, depth: int
) -> None:
    # Login parses its own body (JSON or form); it must answer like FastAPI's routes do.
    body = b"[" * depth + b"]" * depth

    login = await client.post("/auth/login", content=body, headers=JSON)
    register = await client.post("/auth/register", content=body, headers=JSON)

    assert 400 <= login.status_code < 500
    assert login.status_code == register.status_code
    assert set(login.json()) == set(register.json()) == {"detail", "code"}
    assert login.json()["code"] == register.json()["code"]


async def test_login_body_that_is_not_utf8_is_400_like_other_routes(
    client: httpx2.AsyncClient,
) -> None:
    body = b'{"email": "\xff@example.com", "password": "whatever1"}'

    login = await client.post("/auth/login", content=body, headers=JSON)
    register = await client.post("/auth/register", content=body, headers=JSON)

    assert login.status_code == register.status_code == 400
    assert login.json() == register.json()
    assert login.json() == {"detail": "There was an error parsing the body", "code": "bad_request"}
