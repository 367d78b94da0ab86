"""CORS, answered by the gateway alone, and security headers on every response."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.middleware import JSONCORSMiddleware, cors_origins
from tests.gateway.conftest import GatewayUnderTest

PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


@pytest.mark.parametrize("origin", ["http://localhost:3000", "https://my-app.vercel.app"])
async def test_preflight_from_an_allowed_origin_is_answered_by_the_gateway(
    gateway: GatewayUnderTest, origin: str
) -> None:
    async with gateway.client() as client:
        response = await client.options("/api/u/tasks", headers={"Origin": origin, **PREFLIGHT})

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert gateway.tasks.requests == []


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://vercel.app",
        "https://a.b.vercel.app",
        "https://my-app.vercel.app.evil.example",
        "http://my-app.vercel.app",
    ],
)
async def test_disallowed_origins_get_no_allow_origin(
    gateway: GatewayUnderTest, origin: str
) -> None:
    async with gateway.client() as client:
        preflight = await client.options("/api/u/tasks", headers={"Origin": origin, **PREFLIGHT})
        simple = await client.get("/api/u/tasks", headers={"Origin": origin})

    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code == 400
    assert preflight.json() == {"detail": "Disallowed CORS origin", "code": "bad_request"}
    assert "access-control-allow-origin" not in simple.headers
    assert gateway.tasks.requests[-1].path == "/api/u/tasks"  # the GET itself is served


async def test_allowed_origin_can_read_the_total_and_next_page_headers(
    gateway: GatewayUnderTest,
) -> None:
    async with gateway.client() as client:
        response = await client.get("/api/u/tasks", headers={"Origin": "http://localhost:3000"})

    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "x-total-count" in exposed
    assert "x-request-id" in exposed
    # A browser frontend pages with these; unexposed, its script could not read them.
    assert "x-next-cursor" in exposed
    assert "link" in exposed


@pytest.mark.parametrize("path", ["/api/u/tasks", "/", "/nope", "/docs"])
async def test_security_headers_are_on_every_response(gateway: GatewayUnderTest, path: str) -> None:
    async with gateway.client() as client:
        response = await client.get(path)

    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    csp = response.headers["content-security-policy"]
    assert csp == "frame-ancestors 'self' https://huggingface.co https://*.hf.space"
    # X-Frame-Options would stop the Space page from embedding the app.
    assert "x-frame-options" not in response.headers


def test_wildcard_origins_become_one_label_patterns() -> None:
    exact, pattern = cors_origins(["http://localhost:3000", "https://*.vercel.app"])

    assert exact == ["http://localhost:3000"]
    assert pattern == r"https://[A-Za-z0-9-]+\.vercel\.app"


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"content-type", b"application/json")],
        [(b"vary", b"Accept")],
        [(b"vary", b"Accept"), (b"x-total-count", b"3"), (b"vary", b"Cookie")],
    ],
    ids=["none", "no-vary", "one-vary", "two-vary"],
)
async def test_an_answer_to_a_request_without_origin_varies_as_starlettes_cors_says(
    headers: list[tuple[bytes, bytes]],
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b""})

    async def started_headers(middleware: ASGIApp) -> list[tuple[bytes, bytes]]:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"host", b"t")]}
        await middleware(scope, _never_called, send)
        return list(sent[0]["headers"])

    options: dict[str, Any] = {
        "allow_origins": ["http://localhost:3000"],
        "allow_credentials": True,
    }
    starlettes = await started_headers(CORSMiddleware(app, **options))
    ours = await started_headers(JSONCORSMiddleware(app, **options))

    assert ours == starlettes
    assert any(name == b"vary" and value.endswith(b"Origin") for name, value in ours)


async def _never_called() -> Message:
    raise AssertionError("a GET's body is not read here")


async def test_a_page_without_origin_varies_on_accept_and_origin(gateway: GatewayUnderTest) -> None:
    async with gateway.client() as client:
        response = await client.get("/", headers={"Accept": "text/html"})

    assert response.headers.get_list("vary") == ["Accept, Origin"]
