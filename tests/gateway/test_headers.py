"""What headers the gateway forwards, adds and drops, both ways."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Scope

from gateway.headers import request_headers
from tests.gateway.conftest import GatewayFactory, GatewayUnderTest
from tests.support.raw_http import raw_request


async def test_hop_by_hop_headers_are_not_forwarded(gateway: GatewayUnderTest) -> None:
    async with gateway.client() as client:
        await client.get(
            "/api/u/tasks",
            headers={
                "Connection": "keep-alive, X-Private",
                "X-Private": "hop only",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "Proxy-Authorization": "Basic eA==",
                "Proxy-Custom": "for a proxy hop",
                "Upgrade": "websocket",
                "X-Custom": "kept",
                "Authorization": "Bearer t",
            },
        )

    recorded = gateway.tasks.requests[-1]
    for name in ("x-private", "keep-alive", "te", "proxy-authorization", "proxy-custom", "upgrade"):
        assert recorded.header(name) is None, name
    assert recorded.header("x-custom") == "kept"
    assert recorded.header("authorization") == "Bearer t"


async def test_the_upstream_gets_no_header_the_client_did_not_send(
    gateway: GatewayUnderTest,
) -> None:
    # Sent by hand: a client library would add Accept, Accept-Encoding and User-Agent.
    await raw_request(gateway.url, "GET", "/api/u/tasks", [("x-custom", "kept")])

    recorded = gateway.tasks.requests[-1]
    # Above all no Accept-Encoding: the body comes back as the service sends it, so a
    # compressed one would reach a client that never asked for compression.
    assert {name for name, _ in recorded.headers} == {
        "host",
        "x-custom",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
    }


async def test_a_body_reaches_the_upstream_with_no_header_the_client_did_not_send(
    gateway: GatewayUnderTest,
) -> None:
    # Only a length of its own: a client library would add a Content-Type for raw bytes, and
    # the body has been read already, so Expect has been answered.
    reader, writer = await asyncio.open_connection(*gateway.url[7:].split(":"))
    writer.write(
        b"POST /api/u/tasks HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n"
        b"Expect: 100-continue\r\n\r\nhi"
    )
    await writer.drain()
    interim = await reader.readuntil(b"\r\n\r\n")
    final = await reader.readuntil(b"\r\n\r\n")
    writer.close()

    assert interim.startswith(b"HTTP/1.1 100 ")
    assert final.startswith(b"HTTP/1.1 200 ")
    recorded = gateway.tasks.requests[-1]
    assert recorded.body == b"hi"
    assert {name for name, _ in recorded.headers} == {
        "host",
        "content-length",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
    }


async def test_hop_by_hop_proxy_and_cors_response_headers_are_dropped(
    gateway: GatewayUnderTest,
) -> None:
    async with gateway.client() as client:
        response = await client.get("/api/u/hop")
        refused = await client.get("/api/u/hop", headers={"Origin": "https://evil.example"})

    assert response.headers["x-kept"] == "yes"
    for name in ("x-hop-private", "keep-alive", "proxy-status"):
        assert name not in response.headers, name
    # CORS is the gateway's alone: the service's own answer would admit any origin.
    assert not [name for name in response.headers if name.startswith("access-control-")]
    assert "access-control-allow-origin" not in refused.headers


async def test_upstream_sees_its_own_host_and_forwarding_headers(
    gateway: GatewayUnderTest,
) -> None:
    async with gateway.client() as client:
        await client.get(
            "/auth/login",
            headers={"Host": "todo.example.org", "X-Forwarded-For": "203.0.113.9"},
        )

    recorded = gateway.auth.requests[-1]
    host = recorded.header("host")
    assert host is not None
    assert host.startswith("127.0.0.1:")
    assert recorded.header("x-forwarded-host") == "todo.example.org"
    assert recorded.header("x-forwarded-proto") == "http"
    # The test client connects from an address the gateway's server trusts (as it would a
    # front proxy), so the client named in its X-Forwarded-For is the one passed on.
    assert recorded.header("x-forwarded-for") == "203.0.113.9"


async def test_a_spoofed_chain_from_an_untrusted_client_becomes_its_real_address(
    make_gateway: GatewayFactory,
) -> None:
    async with (
        make_gateway(forwarded_allow_ips="192.0.2.1") as gateway,
        gateway.client() as client,
    ):
        await client.post("/auth/login", headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"})

    # A service trusting the gateway would otherwise count a login from an address of the
    # client's choosing.
    assert gateway.auth.requests[-1].header("x-forwarded-for") == "127.0.0.1"


def _scope(client: str, forwarded_for: bytes | None) -> Scope:
    headers = [(b"host", b"api.example.org")]
    if forwarded_for is not None:
        headers.append((b"x-forwarded-for", forwarded_for))
    return {"headers": headers, "client": (client, 5000), "scheme": "https", "state": {}}


@pytest.mark.parametrize(
    ("client", "incoming"),
    [
        # No proxy in front: the peer is the client.
        ("198.51.100.7", None),
        # An untrusted peer's claim is dropped: uvicorn left the peer as the client.
        ("198.51.100.7", b"203.0.113.9"),
        # Behind a trusted front proxy, uvicorn resolved the client; the entries to its left
        # were written by the client itself.
        ("203.0.113.9", b"10.9.9.9, 203.0.113.9"),
    ],
)
def test_forwarded_for_is_only_the_client_the_gateways_server_resolved(
    client: str, incoming: bytes | None
) -> None:
    headers = dict(request_headers(_scope(client, incoming)))

    assert headers[b"x-forwarded-for"] == client.encode()
    assert headers[b"x-forwarded-proto"] == b"https"
    assert headers[b"x-forwarded-host"] == b"api.example.org"
    assert b"host" not in headers


async def test_request_id_is_kept_forwarded_and_returned(gateway: GatewayUnderTest) -> None:
    async with gateway.client() as client:
        response = await client.get("/api/u/tasks", headers={"X-Request-ID": "trace-123"})

    assert response.headers["x-request-id"] == "trace-123"
    assert gateway.tasks.requests[-1].header("x-request-id") == "trace-123"


@pytest.mark.parametrize("sent", [None, "bad id with spaces", "x" * 200])
async def test_missing_or_insane_request_id_is_replaced_consistently(
    gateway: GatewayUnderTest, sent: str | None
) -> None:
    headers = {"X-Request-ID": sent} if sent else {}
    async with gateway.client() as client:
        response = await client.get("/api/u/tasks", headers=headers)

    returned = response.headers["x-request-id"]
    assert returned != sent
    assert gateway.tasks.requests[-1].header("x-request-id") == returned


async def test_one_users_cookie_never_reaches_another_users_request(
    gateway: GatewayUnderTest,
) -> None:
    async with gateway.client() as alice, gateway.client() as bob:
        set_cookie = await alice.get("/api/alice/set-cookie")
        await bob.get("/api/bob/tasks")

    assert set_cookie.headers["set-cookie"] == "session=user-a; Path=/"
    assert gateway.tasks.requests[-1].header("cookie") is None


async def test_a_clients_own_cookie_is_forwarded(gateway: GatewayUnderTest) -> None:
    async with gateway.client() as client:
        await client.get("/api/u/tasks", headers={"Cookie": "theme=dark"})

    assert gateway.tasks.requests[-1].header("cookie") == "theme=dark"
