"""The reverse proxy: streams a request to an upstream service and its response back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import httpx2
from starlette.types import Message, Receive, Scope, Send

from gateway.headers import request_headers, response_headers
from gateway.upstream import Upstream

logger = logging.getLogger(__name__)

# Seconds a client told "busy" (503) should wait before trying again.
BUSY_RETRY_AFTER_SECONDS = 5


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
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer with the API's `{"detail": ...}` error body."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def proxy(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    upstream: Upstream,
    max_body_bytes: int,
) -> None:
    """Forward one HTTP request to `upstream` and stream its answer back."""
    has_body, declared = _request_body(scope["headers"])
    if declared is not None and declared > max_body_bytes:
        # Answer before reading a byte of the body.
        await send_error(send, 413, "Request body too large")
        return

    # Set once the request body is read: from then on, all the client can still send is a
    # disconnect.
    body_read = asyncio.Event()
    if not has_body:
        body_read.set()

    async def body() -> AsyncIterator[bytes]:
        received = 0
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                # Ending the stream here would complete a truncated request upstream (or
                # trip the client library over a short Content-Length): abort it instead.
                raise ClientDisconnectedError
            chunk: bytes = message.get("body", b"")
            received += len(chunk)
            if received > max_body_bytes:
                raise BodyTooLargeError
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                body_read.set()
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
    request = httpx2.Request(
        scope["method"],
        url,
        headers=request_headers(scope),
        content=body() if has_body else None,
    )
    # The upstream response is closed on leaving the stack, once nothing reads it any more.
    async with contextlib.AsyncExitStack() as cleanup:
        exchange = _exchange(request, send, upstream, cleanup)
        if not await _unless_client_leaves(exchange, receive, after=body_read):
            logger.info("Client left before the answer of %s was complete", upstream.name)


async def _exchange(
    request: httpx2.Request, send: Send, upstream: Upstream, cleanup: contextlib.AsyncExitStack
) -> None:
    """Send `request` upstream and relay the answer, or answer the failure.

    Nothing is awaited after the answer's last message: once it is sent, the server reports
    a disconnect, which must not be mistaken for the client leaving early.
    """
    try:
        response = await upstream.client.send(request, stream=True)
    except BodyTooLargeError:
        await send_error(send, 413, "Request body too large")
        return
    except ClientDisconnectedError:
        logger.info("Client left before sending its whole request to %s", upstream.name)
        return
    except httpx2.PoolTimeout:
        # Every connection to the service is busy: not the service being slow to answer.
        logger.warning("%s busy: no free connection", upstream.name)
        retry_after = str(BUSY_RETRY_AFTER_SECONDS).encode()
        await send_error(
            send, 503, f"{upstream.name} is busy, retry shortly", [(b"retry-after", retry_after)]
        )
        return
    except httpx2.TimeoutException:
        logger.warning("%s timed out", upstream.name)
        await send_error(send, 504, f"{upstream.name} timed out")
        return
    except httpx2.HTTPError as exc:
        # Any failure of the exchange, protocol errors on our side included, is the
        # service's answer missing: a 502, never a 500.
        logger.warning("%s unreachable: %s", upstream.name, type(exc).__name__)
        await send_error(send, 502, f"{upstream.name} unreachable")
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


async def _until_disconnected(receive: Receive, after: asyncio.Event) -> None:
    # One reader at a time: the request body's stream reads until `after` is set, and from
    # then on a disconnect is all there is left to receive.
    await after.wait()
    while (await receive())["type"] != "http.disconnect":
        pass


async def _unless_client_leaves(
    work: Coroutine[Any, Any, None], receive: Receive, *, after: asyncio.Event
) -> bool:
    """Run `work` to its end, or cancel it when the client disconnects first (False then).

    Disconnects are watched for once `after` is set (the request body has been read). The
    server ignores what is sent after a disconnect: without this the gateway would go on
    waiting for, and reading, an upstream answer for no one.
    """
    working = asyncio.ensure_future(work)
    leaving = asyncio.ensure_future(_until_disconnected(receive, after))
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
