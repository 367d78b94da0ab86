"""Which service answers which path."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import GatewayUnderTest


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/auth/login", "auth"),
        ("/auth/anything/deeper", "auth"),
        ("/api/users/me", "auth"),
        ("/api/u1/tasks", "tasks"),
        ("/api/u1/tasks/7/complete", "tasks"),
        ("/api/usersx/tasks", "tasks"),
    ],
)
async def test_paths_reach_their_service(
    gateway: GatewayUnderTest, path: str, service: str
) -> None:
    async with gateway.client() as client:
        response = await client.get(path)

    assert response.status_code == 200
    assert response.json()["service"] == service
    assert response.json()["path"] == path


async def test_method_query_and_encoded_path_pass_through(gateway: GatewayUnderTest) -> None:
    async with gateway.client() as client:
        response = await client.patch(
            "/api/a%2Fb/tasks", params={"q": "milk & eggs", "tag": "x"}, json={"a": 1}
        )

    recorded = gateway.tasks.requests[-1]
    assert response.status_code == 200
    assert recorded.method == "PATCH"
    assert recorded.raw_path == b"/api/a%2Fb/tasks"
    assert recorded.query == b"q=milk+%26+eggs&tag=x"
    assert recorded.body == b'{"a":1}'


async def test_root_names_the_service(gateway: GatewayUnderTest) -> None:
    async with gateway.client() as client:
        body = (await client.get("/")).json()

    assert body["service"] == "Todo API gateway"
    assert (body["docs"], body["health"]) == ("/docs", "/health")
    assert body["version"]


@pytest.mark.parametrize("path", ["/nope", "/apix", "/authx", "/docs/", "/health/"])
async def test_unknown_paths_are_404_without_touching_a_service(
    gateway: GatewayUnderTest, path: str
) -> None:
    async with gateway.client() as client:
        response = await client.get(path)

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
    assert gateway.auth.requests == gateway.tasks.requests == []


async def test_trailing_slash_is_not_redirected(gateway: GatewayUnderTest) -> None:
    async with gateway.client() as client:
        response = await client.get("/api/u1/tasks/")

    assert response.status_code == 200
    assert "location" not in response.headers
    assert gateway.tasks.requests[-1].path == "/api/u1/tasks/"
