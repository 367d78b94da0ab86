"""The reverse proxy: relays a request to an upstream service and streams its answer back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from typing import Any

import httpx2
from starlette.types import Receive, Scope, Send

from gateway.headers import request_headers, response_headers
from gateway.upstream import Upstream
from shared.errors import ErrorCode, error_body
from shared.server import MAX_HEADER_FIELDS

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
    # Not client.build_request: that adds the client's own Accept, Accept-Encoding and
    # User-Agent, and bodies are relayed as they are, so a service could compress for a
    # client that never asked. The client's timeouts still apply: send() sets them on a
    # request that carries none.
    try:
        request = httpx2.Request(scope["method"], url, headers=headers, content=content)
    except httpx2.InvalidURL:
        await send_error(send, ErrorCode.BAD_REQUEST, "Invalid request target")
        return
    # The upstream response is closed on leaving the stack, once nothing reads it any more.
    async with contextlib.AsyncExitStack() as cleanup:
        exchange = _exchange(request, send, upstream, cleanup)
        if not await _unless_client_leaves(exchange, receive):
            logger.info("Client left before the answer of %s was complete", upstream.name)


async def _exchange(
    request: httpx2.Request, send: Send, upstream: Upstream, cleanup: contextlib.AsyncExitStack
) -> None:
    """Send `request` upstream and relay the answer, or answer the failure.

    Nothing is awaited after the answer's last message: once it is sent, the server reports
    a disconnect, which must not be mistaken for the client leaving early.
    """
    upstream.load.in_flight += 1
    cleanup.callback(upstream.load.done)
    try:
        response = await upstream.client.send(request, stream=True)
    except httpx2.PoolTimeout:
        # Every connection to the service is busy: not the service being slow to answer.
        logger.warning("%s busy: no free connection", upstream.name)
        retry_after = str(BUSY_RETRY_AFTER_SECONDS).encode()
        await send_error(
            send,
            ErrorCode.UPSTREAM_BUSY,
            f"{upstream.name} is busy, retry shortly",
            [(b"retry-after", retry_after)],
        )
        return
    except httpx2.TimeoutException:
        logger.warning("%s timed out", upstream.name)
        await send_error(send, ErrorCode.UPSTREAM_TIMEOUT, f"{upstream.name} timed out")
        return
    except httpx2.LocalProtocolError:
        # The client library refuses to write something the client sent (a header value
        # with a character HTTP does not allow there): bad input, not a failed service.
        await send_error(send, ErrorCode.BAD_REQUEST, "The request cannot be forwarded as sent")
        return
    except httpx2.HTTPError as exc:
        # Any other failure of the exchange is the service's answer missing: a 502.
        logger.warning("%s unreachable: %s", upstream.name, type(exc).__name__)
        await send_error(send, ErrorCode.UPSTREAM_UNREACHABLE, f"{upstream.name} unreachable")
        return
    cleanup.push_async_callback(response.aclose)
    await _relay(response, send, upstream)


async def _relay(response: httpx2.Response, send: Send, upstream: Upstream) -> None:
    """Stream the upstream's answer to the client, as received."""
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response_headers(response),
        }
    )
    try:
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except httpx2.HTTPError as exc:
        # The status line is gone already: all that is left is to end the response early.
        logger.warning("%s failed mid-response: %s", upstream.name, type(exc).__name__)
        return
    await send({"type": "http.response.body", "body": b""})


async def _until_disconnected(receive: Receive) -> None:
    # The request body has been read: a disconnect is all there is left to receive.
    while (await receive())["type"] != "http.disconnect":
        pass


async def _unless_client_leaves(work: Coroutine[Any, Any, None], receive: Receive) -> bool:
    """Run `work` to its end, or cancel it when the client disconnects first (False then).

    The server ignores what is sent after a disconnect: without this the gateway would go on
    waiting for, and reading, an upstream answer for no one.
    """
    working = asyncio.ensure_future(work)
    leaving = asyncio.ensure_future(_until_disconnected(receive))
    try:
        await asyncio.wait((working, leaving), return_when=asyncio.FIRST_COMPLETED)
    finally:
        working.cancel()
        leaving.cancel()
        await asyncio.wait((working, leaving))
    if working.cancelled():
        return False
    working.result()  # raises what went wrong in there
    return True
