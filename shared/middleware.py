"""Pure ASGI middleware used by every process."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import ErrorCode, error_response
from shared.logging import ACCESS_LINE, ACCESS_LOGGER, request_id_var
from shared.metrics import in_flight, observe_request
from shared.server import connection_of

REQUEST_ID_HEADER = b"x-request-id"
# Logged for a request whose client went away before its answer was complete (nginx's code).
CLIENT_CLOSED_REQUEST = 499
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

access_logger = logging.getLogger(ACCESS_LOGGER)
logger = logging.getLogger(__name__)


def pick_request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-ID when it is short and plain, else a fresh one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if _SANE_REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            break
    # 128 random bits as 32 hex digits, like a UUID4's hex without building the UUID.
    return os.urandom(16).hex()


class RequestContextMiddleware:
    """Gives each request an id (kept from the client when sane), echoes it, logs the request,
    and adds the process's own response headers (the gateway's security headers).

    The id lives in `request_id_var` for log lines and in `scope["state"]["request_id"]` for
    code that forwards it. HEAD is answered as GET without the body, so every GET route
    serves it. A client that hangs up before its answer is complete is logged as 499, the
    status nginx uses for it: the server did nothing wrong.
    """

    def __init__(
        self,
        app: ASGIApp,
        headers: Sequence[tuple[bytes, bytes]] = (),
        beside: frozenset[bytes] = frozenset(),
    ) -> None:
        self.app = app
        # Headers every response carries besides its id: each replaces the app's own header
        # of that name, but for the names in `beside`, which are added next to the app's.
        self.headers = list(headers)
        self.replaced = frozenset(name for name, _ in headers) - beside | {REQUEST_ID_HEADER}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = pick_request_id(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        method = scope["method"]
        head = method == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}
        status = 500
        complete = client_left = False

        async def receive_watching() -> Message:
            nonlocal client_left
            message = await receive()
            if message["type"] == "http.disconnect" and not complete:
                # Whatever the app answers after this (a 400 for a body cut short, say)
                # reaches no one.
                client_left = True
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = message["status"]
                replaced = self.replaced
                headers = [h for h in message.get("headers", []) if h[0].lower() not in replaced]
                headers.append((REQUEST_ID_HEADER, request_id.encode("ascii")))
                message = {**message, "headers": headers + self.headers}
            elif message["type"] == "http.response.body":
                complete = not message.get("more_body", False)
                if head:
                    # The headers (Content-Length included) stay those of the GET.
                    if not complete:
                        return
                    message = {"type": "http.response.body", "body": b""}
            await send(message)

        in_flight.count += 1
        try:
            await self.app(scope, receive_watching, send_with_id)
        finally:
            in_flight.count -= 1
            seconds = time.perf_counter() - started
            if not complete and not client_left:
                # The app may not have called receive() since: the server says so too.
                connection = connection_of(scope)
                client_left = connection is not None and connection.lost
            logged_status = CLIENT_CLOSED_REQUEST if client_left else status
            observe_request(scope, method, logged_status, seconds)
            # The path only: query strings can carry user input that has no place in logs.
            # Its arguments are its fields in the JSON format (see ACCESS_LINE).
            access_logger.info(ACCESS_LINE, method, scope["path"], logged_status, seconds * 1000)
            request_id_var.reset(token)


class UnhandledErrorMiddleware:
    """Turns an exception escaping the app into the API's bare 500.

    Install it innermost: Starlette's own last-resort handler answers outside every other
    middleware, so its 500 would miss the request id, security and CORS headers.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_tracking_start(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking_start)
        except ClientDisconnect:
            # Nobody is left to answer, and nothing went wrong here: RequestContextMiddleware
            # logs the request as 499.
            logger.info("Client left during %s %s", scope["method"], scope["path"])
        except Exception:
            logger.exception("Unhandled error on %s %s", scope["method"], scope["path"])
            if started:
                # Too late for a 500: the server must cut the response short instead.
                raise
            response = error_response(ErrorCode.INTERNAL_ERROR, "Internal Server Error")
            await response(scope, receive, send)
