"""Which service answers which path."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import GatewayUnderTest
from tests.support.raw_http import raw_request


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


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [
        ("/auth/login/", "/auth/login"),
        ("/api/users/me/", "/api/users/me"),
        ("/api/u1/tasks/", "/api/u1/tasks"),
        ("/api/u1/tasks/7//", "/api/u1/tasks/7"),
    ],
)
async def test_a_trailing_slash_is_served_as_without_it_and_never_redirected(
    gateway: GatewayUnderTest, sent: str, forwarded: str
) -> None:
    async with gateway.client() as client:
        response = await client.post(f"{sent}?q=1", json={"a": 1})
        assert "location" not in response.headers

    assert response.status_code == 200
    assert response.json()["path"] == forwarded
    assert response.json()["query"] == "q=1"
    upstream = gateway.auth if forwarded.startswith(("/auth", "/api/users")) else gateway.tasks
    assert upstream.requests[-1].raw_path == forwarded.encode()


@pytest.mark.parametrize("path", ["/health/live/", "/openapi.json/", "/docs/"])
async def test_the_gateways_own_routes_take_a_trailing_slash(
    gateway: GatewayUnderTest, path: str
) -> None:
    async with gateway.client() as client:
        with_slash = await client.get(path)
        without = await client.get(path.rstrip("/"))

    assert with_slash.status_code == without.status_code == 200
    assert with_slash.headers["content-type"] == without.headers["content-type"]


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


@pytest.mark.parametrize("path", ["/nope", "/apix", "/authx", "/nope/"])
async def test_unknown_paths_are_404_without_touching_a_service(
    gateway: GatewayUnderTest, path: str
) -> None:
    async with gateway.client() as client:
        response = await client.get(path)

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found", "code": "not_found"}
    assert gateway.auth.requests == gateway.tasks.requests == []


@pytest.mark.parametrize(
    "target",
    [
        "/api/x/../../health",
        "/api/x/../../openapi.json",
        "/api/x/../../docs",
        "/api/x;/../../health",
        "/api/x/..;/..;/health",
        "/api/x/%2e%2e/%2E%2E/health",
        "/api/x/.%2e/health",
        "/api/x/..%2f..%2fhealth",
        "/auth/../api/u/tasks",
        "/api/./u/tasks",
        "/api/u/tasks/.",
    ],
)
async def test_paths_with_dot_segments_are_404_without_touching_a_service(
    gateway: GatewayUnderTest, target: str
) -> None:
    # Sent as written: an HTTP client library would resolve the dots itself.
    response = await raw_request(gateway.url, "GET", target)

    assert response.status == 404
    assert response.json() == {"detail": "Not Found", "code": "not_found"}
    assert gateway.auth.requests == gateway.tasks.requests == []


@pytest.mark.parametrize(
    "target", ["/api/u/.hidden", "/api/u/.../x", "/api/a..b/tasks", "/api/%2e%2ex/tasks"]
)
async def test_dots_that_are_not_segments_reach_the_service_as_sent(
    gateway: GatewayUnderTest, target: str
) -> None:
    response = await raw_request(gateway.url, "GET", target)

    assert response.status == 200
    assert gateway.tasks.requests[-1].raw_path == target.encode()


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no-such-page", 404, "not_found"),
        ("DELETE", "/health", 405, "method_not_allowed"),
    ],
)
async def test_the_gateways_own_errors_carry_their_code(
    gateway: GatewayUnderTest, method: str, path: str, status: int, code: str
) -> None:
    async with gateway.client() as client:
        response = await client.request(method, path)

    assert response.status_code == status
    assert response.json()["code"] == code
