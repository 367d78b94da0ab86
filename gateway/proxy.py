"""The reverse proxy: relays a request to an upstream service and streams its answer back."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import Any

import aiohttp
from multidict import CIMultiDict
from starlette.types import Receive, Scope, Send
from yarl import URL

from gateway.headers import has_control_character, request_headers, response_headers
from gateway.upstream import Upstream
from shared.errors import ErrorCode, error_body
from shared.metrics import UPSTREAM_ERRORS
from shared.server import MAX_HEADER_FIELDS, Connection, connection_of

logger = logging.getLogger(__name__)

# Seconds a client told "busy" (503) should wait before trying again.
BUSY_RETRY_AFTER_SECONDS = 5
# Sent with the answer to a body that is late: the server closes the connection rather than
# go on reading it. (After a 413 it reads and drops the rest, so the client sees the answer.)
_CLOSE = [(b"connection", b"close")]


class BodyTooLargeError(Exception):
    """The client sent more than the gateway accepts."""


class ClientDisconnectedError(Exception):
    """The client went away before its request body was complete."""


def _request_body(headers: list[tuple[bytes, bytes]]) -> tuple[bool, int | None]:
    """Whether the request has a body, and the length it declares if it does."""
    has_body, declared = False, None
    for name, value in headers:
        if name == b"transfer-encoding":
            has_body = True
        elif name == b"content-length":
            length = value.strip()
            has_body = has_body or length != b"0"
            declared = int(length) if length.isdigit() else None
    return has_body, declared


async def send_error(
    send: Send,
    code: ErrorCode,
    detail: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer with the API's `{"detail": ..., "code": ...}` error body."""
    body = json.dumps(error_body(code, detail)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": code.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, max_body_bytes: int) -> bytes:
    """The whole request body, refused once it is over `max_body_bytes`."""
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError
        chunk: bytes = message.get("body", b"")
        received += len(chunk)
        if received > max_body_bytes:
            raise BodyTooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _headers_too_large(headers: list[tuple[bytes, bytes]], max_header_bytes: int) -> bool:
    # What the service will receive, its Host line included, must fit the limits the
    # services enforce themselves: the same as the gateway's.
    size = sum(len(name) + len(value) + 4 for name, value in headers)
    return len(headers) + 1 > MAX_HEADER_FIELDS or size > max_header_bytes


async def proxy(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    upstream: Upstream,
    max_body_bytes: int,
    body_timeout: float,
    max_header_bytes: int,
) -> None:
    """Forward one HTTP request to `upstream` and stream its answer back.

    The request body is read whole (at most `max_body_bytes`, within `body_timeout`) before
    an upstream connection is taken: a client that sends slowly holds nothing but its own
    connection, and the service gets the request at once.
    """
    has_body, declared = _request_body(scope["headers"])
    if declared is not None and declared > max_body_bytes:
        # Answer before reading a byte of the body.
        await send_error(send, ErrorCode.BODY_TOO_LARGE, "Request body too large")
        return
    headers = request_headers(scope)
    if _headers_too_large(headers, max_header_bytes):
        await send_error(send, ErrorCode.HEADERS_TOO_LARGE, "Request headers too large")
        return
    if has_control_character(headers):
        # The server lets a few through (a vertical tab, say) that HTTP does not allow in a
        # value: refused here, as bad input, rather than sent on for the service to refuse.
        await send_error(send, ErrorCode.BAD_REQUEST, "A header value has a control character")
        return
    content = None
    if has_body:
        try:
            async with asyncio.timeout(body_timeout):
                content = await _read_body(receive, max_body_bytes)
        except TimeoutError:
            await send_error(
                send, ErrorCode.BODY_TIMEOUT, "Request body not received in time", _CLOSE
            )
            return
        except BodyTooLargeError:
            await send_error(send, ErrorCode.BODY_TOO_LARGE, "Request body too large")
            return
        except ClientDisconnectedError:
            logger.info("Client left before sending its whole request to %s", upstream.name)
            return

    path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope["query_string"]
    url = upstream.base_url + path.decode("latin-1")
    if query:
        url += "?" + query.decode("latin-1")
    # As received: the target is sent exactly as the client wrote it (dot segments were
    # refused before routing).
    target = URL(url, encoded=True)
    forwarded = CIMultiDict(
        [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]
    )
    exchange = _exchange(
        scope["method"], target, headers=forwarded, content=content, send=send, upstream=upstream
    )
    if not await _unless_client_leaves(exchange, receive, connection_of(scope)):
        logger.info("Client left before the answer of %s was complete", upstream.name)


async def _exchange(
    method: str,
    target: URL,
    *,
    headers: CIMultiDict[str],
    content: bytes | None,
    send: Send,
    upstream: Upstream,
) -> None:
    """Send the request upstream and relay the answer, or answer the failure.

    Nothing is awaited after the answer's last message: once it is sent, the server reports
    a disconnect, which must not be mistaken for the client leaving early.
    """
    load = upstream.load
    # Every connection was in use when this request came: a connect timeout then is the
    # wait for a free one, not the service failing to accept.
    waited = load.full
    load.in_flight += 1
    try:
        async with upstream.session.request(
            method, target, headers=headers, data=content, allow_redirects=False
        ) as response:
            await _relay(response, send, upstream)
    except aiohttp.ConnectionTimeoutError:
        if waited:
            UPSTREAM_ERRORS.labels(upstream.name, "busy").inc()
            logger.warning("%s busy: no free connection", upstream.name)
            retry_after = str(BUSY_RETRY_AFTER_SECONDS).encode()
            await send_error(
                send,
                ErrorCode.UPSTREAM_BUSY,
                f"{upstream.name} is busy, retry shortly",
                [(b"retry-after", retry_after)],
            )
        else:
            UPSTREAM_ERRORS.labels(upstream.name, "timeout").inc()
            logger.warning("%s timed out connecting", upstream.name)
            await send_error(send, ErrorCode.UPSTREAM_TIMEOUT, f"{upstream.name} timed out")
    except aiohttp.ServerTimeoutError:
        UPSTREAM_ERRORS.labels(upstream.name, "timeout").inc()
        logger.warning("%s timed out", upstream.name)
        await send_error(send, ErrorCode.UPSTREAM_TIMEOUT, f"{upstream.name} timed out")
    except aiohttp.ClientError as exc:
        # Any other failure of the exchange is the service's answer missing: a 502.
        UPSTREAM_ERRORS.labels(upstream.name, "refused").inc()
        logger.warning("%s unreachable: %s", upstream.name, type(exc).__name__)
        await send_error(send, ErrorCode.UPSTREAM_UNREACHABLE, f"{upstream.name} unreachable")
    finally:
        load.done()


async def _relay(response: aiohttp.ClientResponse, send: Send, upstream: Upstream) -> None:
    """Stream the upstream's answer to the client, as received.

    The chunk that completes the body is sent as the last: an answer that came whole (nearly
    every one) is two messages, not three.
    """
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": response_headers(response.raw_headers),
        }
    )
    content = response.content
    try:
        while chunk := await content.readany():
            last = content.at_eof()
            await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            if last:
                return
    except aiohttp.ClientError as exc:
        # The status line is gone already: all that is left is to end the response early.
        logger.warning("%s failed mid-response: %s", upstream.name, type(exc).__name__)
        return
    await send({"type": "http.response.body", "body": b""})


async def _until_disconnected(receive: Receive) -> None:
    # The request body has been read: a disconnect is all there is left to receive.
    while (await receive())["type"] != "http.disconnect":
        pass


async def _unless_client_leaves(
    work: Coroutine[Any, Any, None], receive: Receive, connection: Connection | None
) -> bool:
    """Run `work` to its end, or cancel it when the client disconnects first (False then).

    The server ignores what is sent after a disconnect: without this the gateway would go on
    waiting for, and reading, an upstream answer for no one. `work` runs in this task, and
    the server's `Connection` cancels it the moment the client's connection is lost; under
    another server, one watcher task awaiting the disconnect does.
    """
    task = asyncio.current_task()
    assert task is not None  # noqa: S101 (always inside the server's request task)
    left = False

    def leave() -> None:
        nonlocal left
        left = True
        task.cancel()

    async def watch() -> None:
        await _until_disconnected(receive)
        leave()

    watcher = None
    if connection is None:
        watcher = asyncio.create_task(watch())
    elif connection.lost:
        work.close()
        return False
    else:
        connection.on_lost(leave)
    try:
        await work
    except asyncio.CancelledError:
        if not left:
            raise
        # The cancellation was ours, not the server's: this task goes on as usual.
        task.uncancel()
        return False
    finally:
        if watcher is not None:
            watcher.cancel()
        elif connection is not None:
            connection.forget(leave)
    return True
