"""Clients that send slowly, send too much, never finish, or send odd but legal requests."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest

import gateway.upstream
from tests.gateway.conftest import GatewayFactory, GatewayUnderTest, eventually
from tests.support.raw_http import RawResponse, raw_request


async def _connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    address = urlsplit(url)
    return await asyncio.open_connection(address.hostname, address.port)


async def _answer(reader: asyncio.StreamReader, within: float = 5) -> RawResponse:
    """The next response on the connection (failing the test when it closes without one)."""
    async with asyncio.timeout(within):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            pytest.fail("the connection was closed without an answer")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in filter(None, lines):
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawResponse(int(status_line.split()[1]), headers, body)


async def _answer_then_close(
    reader: asyncio.StreamReader, started: float
) -> tuple[RawResponse, float, bool]:
    """The next response, the seconds from `started` to it, and whether the connection then
    closed."""
    answer = await _answer(reader)
    elapsed = time.monotonic() - started
    return answer, elapsed, await _closed(reader)


async def _closed(reader: asyncio.StreamReader, within: float = 5) -> bool:
    async with asyncio.timeout(within):
        try:
            return await reader.read(65536) == b""
        except ConnectionError:
            return True


async def _exchange(url: str, method: str, header: bytes, body: bytes = b"") -> RawResponse:
    """The answer to one request for /api/u/tasks with `header`, sent whole on a connection
    of its own."""
    reader, writer = await _connect(url)
    writer.write(_head(method, "/api/u/tasks", header, b"Connection: close") + body)
    answer = await _answer(reader)
    writer.close()
    return answer


@asynccontextmanager
async def _connected(
    make_gateway: GatewayFactory, **settings: Any
) -> AsyncIterator[tuple[GatewayUnderTest, asyncio.StreamReader, asyncio.StreamWriter]]:
    """A gateway with `settings` and one raw connection to it, closed before it stops."""
    async with make_gateway(**settings) as running:
        reader, writer = await _connect(running.url)
        try:
            yield running, reader, writer
        finally:
            writer.close()


def _head(method: str, path: str, *lines: bytes) -> bytes:
    return b"\r\n".join([f"{method} {path} HTTP/1.1".encode(), b"Host: gw", *lines, b"", b""])


# Item: slow bodies.


async def test_a_slow_body_is_408_and_never_reaches_a_service(
    make_gateway: GatewayFactory,
) -> None:
    async with _connected(make_gateway, body_timeout=0.5) as (running, reader, writer):
        writer.write(_head("POST", "/api/u/tasks", b"Content-Length: 100"))
        started = time.monotonic()
        for _ in range(3):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.2)
        answer, elapsed, closed = await _answer_then_close(reader, started)

    assert answer.status == 408
    assert answer.json() == {"detail": "Request body not received in time", "code": "body_timeout"}
    assert 0.5 <= elapsed < 2
    assert closed
    assert running.tasks.requests == []
    assert running.tasks.aborted == []


async def test_slow_uploads_hold_no_upstream_connection(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One pooled connection per service: a slow upload holding it would make the next
    # request wait for a connection and answer 503 busy.
    monkeypatch.setattr(gateway.upstream, "MAX_CONNECTIONS_PER_SERVICE", 1)
    async with make_gateway(upstream_connect_timeout=0.5) as running:
        writers = []
        for _ in range(3):
            _, writer = await _connect(running.url)
            writer.write(_head("POST", "/api/u/tasks", b"Content-Length: 100000") + b"x")
            await writer.drain()
            writers.append(writer)
        await asyncio.sleep(0.2)
        async with running.client() as client:
            others = [await client.get("/api/u/tasks") for _ in range(3)]
        for writer in writers:
            writer.close()

    assert [response.status_code for response in others] == [200, 200, 200]


async def test_a_body_that_arrives_in_time_is_forwarded_whole(
    make_gateway: GatewayFactory,
) -> None:
    async with _connected(make_gateway, body_timeout=2) as (running, reader, writer):
        writer.write(_head("POST", "/api/u/tasks", b"Content-Length: 6", b"Connection: close"))
        for piece in (b"ab", b"cd", b"ef"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.1)
        answer = await _answer(reader)

    assert answer.status == 200
    assert running.tasks.requests[-1].body == b"abcdef"


# Item: header bounds.


async def test_over_a_hundred_header_fields_is_431_before_any_forwarding(
    gateway: GatewayUnderTest,
) -> None:
    fields = [(f"x-field-{n}", "v") for n in range(101)]
    answer = await raw_request(gateway.url, "GET", "/api/u/tasks", fields)

    assert answer.status == 431
    assert answer.json()["code"] == "headers_too_large"
    assert gateway.tasks.requests == []


async def test_headers_over_the_byte_limit_are_431(make_gateway: GatewayFactory) -> None:
    async with make_gateway(max_header_bytes=4096) as running:
        fits = await raw_request(running.url, "GET", "/api/u/tasks", [("x-big", "a" * 3000)])
        too_big = await raw_request(running.url, "GET", "/api/u/tasks", [("x-big", "a" * 5000)])

    assert fits.status == 200
    assert too_big.status == 431
    assert too_big.json() == {"detail": "Request headers too large", "code": "headers_too_large"}
    assert len(running.tasks.requests) == 1


async def _send_until_refused(writer: asyncio.StreamWriter, most: int) -> int:
    """Bytes written before the peer stopped taking them (`most` if it never did)."""
    sent = 0
    try:
        while sent < most:
            writer.write(b"a" * 65536)
            await writer.drain()
            sent += 65536
    except ConnectionError:
        pass
    return sent


async def test_a_huge_header_is_refused_while_it_is_still_arriving(
    make_gateway: GatewayFactory,
) -> None:
    async with _connected(make_gateway, max_header_bytes=4096) as (running, reader, writer):
        writer.write(b"GET /api/u/tasks HTTP/1.1\r\nHost: gw\r\nX-Huge: ")
        # 64 MiB would be buffered whole without a bound; the gateway stops reading.
        sent = await _send_until_refused(writer, 64 * 1024 * 1024)
        try:
            status = (await _answer(reader)).status
        except ConnectionError:
            # Closed with unread data on it: the kernel may reset instead of delivering it.
            status = None

    # Far short of 64 MiB: what was sent after the refusal sat in the kernels' buffers.
    assert sent < 16 * 1024 * 1024
    assert status in {431, None}
    assert running.tasks.requests == []


# Item: header whitespace and framing.


@pytest.mark.parametrize(
    ("header", "forwarded"),
    [
        (b"User-Agent: a ", ("user-agent", "a")),
        (b"Authorization: Bearer abc.def \t", ("authorization", "Bearer abc.def")),
        (b"Accept: */*\t", ("accept", "*/*")),
    ],
)
async def test_trailing_whitespace_in_a_header_is_trimmed_not_a_502(
    gateway: GatewayUnderTest, header: bytes, forwarded: tuple[str, str]
) -> None:
    answer = await _exchange(gateway.url, "GET", header)

    assert answer.status == 200
    assert forwarded in gateway.tasks.requests[-1].headers


async def test_a_content_length_with_trailing_space_frames_the_body_once(
    gateway: GatewayUnderTest,
) -> None:
    answer = await _exchange(gateway.url, "POST", b"Content-Length: 2 ", b"ok")

    assert answer.status == 200
    recorded = gateway.tasks.requests[-1]
    assert recorded.body == b"ok"
    assert recorded.header("content-length") == "2"


async def test_a_header_the_gateway_cannot_relay_is_a_400_not_an_outage(
    gateway: GatewayUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    # The server accepts a vertical tab inside a value; the HTTP client refuses to send it.
    answer = await _exchange(gateway.url, "GET", b"X-Odd: a\x0bb")

    assert answer.status == 400
    assert answer.json()["code"] == "bad_request"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# Item: connections that never finish their headers, and too many connections.


async def test_headers_not_finished_in_time_are_408_and_the_connection_closed(
    make_gateway: GatewayFactory,
) -> None:
    async with _connected(make_gateway, header_timeout=0.5) as (_, reader, writer):
        writer.write(b"GET /api/u/tasks HTTP/1.1\r\nHost: g")
        await writer.drain()
        started = time.monotonic()
        answer, elapsed, closed = await _answer_then_close(reader, started)

    assert answer.status == 408
    assert answer.json()["code"] == "header_timeout"
    assert elapsed < 2
    assert closed


async def test_a_later_request_whose_headers_stall_is_408_too(
    make_gateway: GatewayFactory,
) -> None:
    async with _connected(make_gateway, header_timeout=0.5) as (_, reader, writer):
        # A whole exchange first: the next head starts on a connection already in use.
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert (await _answer(reader)).status == 200
        writer.write(b"GET /api/u/tasks HTTP/1.1\r\nHost: g")
        await writer.drain()
        started = time.monotonic()
        answer, elapsed, closed = await _answer_then_close(reader, started)

    assert answer.status == 408
    assert elapsed < 2
    assert closed


async def test_an_idle_connection_is_closed_after_the_header_timeout(
    make_gateway: GatewayFactory,
) -> None:
    async with _connected(make_gateway, header_timeout=0.5) as (_, reader, _writer):
        started = time.monotonic()
        closed = await _closed(reader)
        elapsed = time.monotonic() - started

    assert closed
    assert 0.4 < elapsed < 2


async def test_connections_past_the_limit_are_refused_with_503(
    make_gateway: GatewayFactory,
) -> None:
    async with make_gateway(max_connections=3) as running:
        idle = [await _connect(running.url) for _ in range(3)]
        reader, writer = await _connect(running.url)
        refused = await _answer(reader)
        writer.close()
        for _, idle_writer in idle:
            idle_writer.close()
        await asyncio.sleep(0.2)
        async with running.client() as client:
            after = await client.get("/health/live")

    assert refused.status == 503
    assert refused.json()["code"] == "too_many_connections"
    assert refused.headers["retry-after"] == "1"
    assert after.status_code == 200


# Item: HEAD, and a full pool shown in /health.


@pytest.mark.parametrize("path", ["/", "/health/live", "/docs", "/redoc", "/openapi.json"])
async def test_head_answers_like_get_without_a_body(gateway: GatewayUnderTest, path: str) -> None:
    get = await raw_request(gateway.url, "GET", path)
    head = await raw_request(gateway.url, "HEAD", path)

    assert head.status == get.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["content-type"] == get.headers["content-type"]


async def test_head_on_a_proxied_route_reaches_the_service_as_a_read(
    gateway: GatewayUnderTest,
) -> None:
    head = await raw_request(gateway.url, "HEAD", "/api/u/tasks")

    assert head.status == 200
    assert head.body == b""
    assert gateway.tasks.requests[-1].method == "GET"


async def test_health_reports_a_service_whose_pool_is_full_as_busy(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway.upstream, "MAX_CONNECTIONS_PER_SERVICE", 2)
    async with make_gateway(upstream_connect_timeout=0.5) as running, running.client() as client:
        running.tasks.healthy = running.auth.healthy = True
        before = (await client.get("/health")).json()
        stalled = [asyncio.create_task(client.get("/api/u/stall")) for _ in range(2)]
        await eventually(lambda: len(running.tasks.requests) == 2)
        during = await client.get("/health")
        for request in stalled:
            request.cancel()
        await asyncio.gather(*stalled, return_exceptions=True)

    assert before["status"] == "ok"
    assert before["services"]["tasks"]["status"] == "ok"
    assert during.status_code == 200
    body = json.loads(during.content)
    assert body["status"] == "busy"
    assert body["services"]["tasks"]["status"] == "busy"
    assert body["services"]["auth"]["status"] == "ok"
