"""A gateway served for real on loopback, in front of stand-in upstreams that record what
they receive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from starlette.types import Receive, Scope, Send

from gateway.app import create_app
from gateway.settings import GatewaySettings
from shared.server import Protocol, ServerLimits
from tests.support.http_server import serve


@dataclass
class Recorded:
    method: str
    path: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name]
        return ", ".join(values) if values else None


@dataclass
class StandIn:
    """An upstream that records each request and answers by path.

    A request whose client goes away before the body is complete is recorded in `aborted`
    only. `/openapi.json` is answered without being recorded.
    `/stream?size=N`: N bytes in 64 KiB chunks; after the first, waits for `release`.
    `/stall`: never answers. Both set `client_gone` when the gateway hangs up early.
    `/set-cookie`: sets a session cookie. `/hop`: sends hop-by-hop, Proxy-* and CORS
    headers. Anything else: 200 with the request echoed as JSON.
    """

    name: str
    requests: list[Recorded] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    first_chunk_sent: asyncio.Event = field(default_factory=asyncio.Event)
    client_gone: asyncio.Event = field(default_factory=asyncio.Event)
    # When set, /health reports "ok" (not recorded) instead of echoing.
    healthy: bool = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        if scope["path"] == "/openapi.json":
            # Fetched by the gateway itself for /docs; not a request under test.
            await _json(send, {"openapi": "3.1.0", "info": {"title": self.name}, "paths": {}}, [])
            return
        if self.healthy and scope["path"] == "/health":
            await _json(send, {"status": "ok", "service": self.name}, [])
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.aborted.append(scope["path"])
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        record = Recorded(
            scope["method"],
            scope["path"],
            scope["raw_path"],
            scope["query_string"],
            [(k.decode(), v.decode()) for k, v in scope["headers"]],
            body,
        )
        self.requests.append(record)
        path = scope["path"]
        if path.endswith("/stream"):
            size = int(parse_qs(scope["query_string"].decode())["size"][0])
            await self._stream(receive, send, size)
        elif path.endswith("/stall"):
            await receive()  # the body was read: only the disconnect is left to receive
            self.client_gone.set()
        elif path.endswith("/set-cookie"):
            await _json(send, {"ok": True}, [(b"set-cookie", b"session=user-a; Path=/")])
        elif path.endswith("/hop"):
            await _json(
                send,
                {"ok": True},
                [
                    (b"connection", b"x-hop-private"),
                    (b"x-hop-private", b"secret"),
                    (b"keep-alive", b"timeout=5"),
                    (b"proxy-status", b"stand-in"),
                    (b"access-control-allow-origin", b"*"),
                    (b"access-control-allow-credentials", b"true"),
                    (b"x-kept", b"yes"),
                ],
            )
        else:
            echo = {
                "service": self.name,
                "method": record.method,
                "path": record.path,
                "query": record.query.decode(),
                "body_length": len(body),
                "headers": record.headers,
            }
            await _json(send, echo, [(b"x-upstream", self.name.encode())])

    async def _stream(self, receive: Receive, send: Send, size: int) -> None:
        async def watch() -> None:
            await receive()  # the body was read: only the disconnect is left to receive
            self.client_gone.set()

        watcher = asyncio.create_task(watch())
        chunk = b"x" * 65536
        await send({"type": "http.response.start", "status": 200, "headers": []})
        sent = 0
        try:
            while sent < size:
                piece = chunk[: size - sent]
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                sent += len(piece)
                if not self.first_chunk_sent.is_set():
                    self.first_chunk_sent.set()
                    await self.release.wait()
        finally:
            # Ending the response makes receive() return too: stop watching first.
            watcher.cancel()
        await send({"type": "http.response.body", "body": b""})


async def _json(send: Send, data: Any, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps(data).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass
class GatewayUnderTest:
    url: str
    auth: StandIn
    tasks: StandIn

    def client(self, **kwargs: Any) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(base_url=self.url, **{"timeout": 10, **kwargs})


@asynccontextmanager
async def running_gateway(
    settings: GatewaySettings,
    *,
    forwarded_allow_ips: str | None = None,
    http: type[asyncio.Protocol] | str | None = None,
) -> AsyncIterator[str]:
    """The gateway app with its lifespan, served on a free loopback port by the protocol its
    command line names, with the limits of `settings` (or by `http`, as `uvicorn --http`
    takes it)."""
    app = create_app(settings)
    protocol = http or Protocol.with_limits(ServerLimits.from_settings(settings))
    async with (
        LifespanManager(app),
        serve(app, forwarded_allow_ips=forwarded_allow_ips, http=protocol) as url,
    ):
        yield url


@asynccontextmanager
async def start_gateway(
    *,
    forwarded_allow_ips: str | None = None,
    http: type[asyncio.Protocol] | str | None = None,
    **overrides: Any,
) -> AsyncIterator[GatewayUnderTest]:
    """Stand-in upstreams and a gateway in front of them; settings may be overridden, and
    whom the gateway's server trusts for forwarding headers (default: 127.0.0.1), and its
    server's protocol (default: the one its command line names)."""
    auth, tasks = StandIn("auth"), StandIn("tasks")
    async with serve(auth) as auth_url, serve(tasks) as tasks_url:
        values: dict[str, Any] = {
            "auth_service_url": auth_url,
            "task_service_url": tasks_url,
            **overrides,
        }
        settings = GatewaySettings(_env_file=None, **values)
        async with running_gateway(
            settings, forwarded_allow_ips=forwarded_allow_ips, http=http
        ) as url:
            yield GatewayUnderTest(url, auth, tasks)


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for `condition` to hold; fail when it still does not after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"still not true after {within} s")
        await asyncio.sleep(0.01)


async def send_and_hang_up(url: str, data: bytes) -> None:
    """Write raw bytes to the server at `url`, then close the connection."""
    address = urlsplit(url)
    _, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(data)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


GatewayFactory = Callable[..., AbstractAsyncContextManager[GatewayUnderTest]]


@pytest.fixture
def make_gateway() -> GatewayFactory:
    """For tests that need their own settings."""
    return start_gateway


@pytest.fixture(scope="module")
async def _shared_gateway() -> AsyncIterator[GatewayUnderTest]:
    async with start_gateway() as running:
        yield running


@pytest.fixture
def gateway(_shared_gateway: GatewayUnderTest) -> GatewayUnderTest:
    """A gateway with default settings, shared by a module, its stand-ins freshly reset."""
    for stand_in in (_shared_gateway.auth, _shared_gateway.tasks):
        stand_in.requests.clear()
        stand_in.aborted.clear()
        stand_in.release = asyncio.Event()
        stand_in.first_chunk_sent = asyncio.Event()
        stand_in.client_gone = asyncio.Event()
        stand_in.healthy = False
    return _shared_gateway
