"""ASGI middleware of the gateway: the proxy dispatch, security headers and CORS."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.proxy import proxy, send_error
from gateway.state import GatewayState
from shared.app import served_path
from shared.errors import ErrorCode, error_body


class ProxyDispatchMiddleware:
    """Sends `/auth/*` and `/api/*` to the services; everything else to the gateway's routes.

    A path with dot segments is a 404 before any routing (see `has_dot_segment`).
    """

    def __init__(self, app: ASGIApp, state: GatewayState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if has_dot_segment(scope["path"]):
                await send_error(send, ErrorCode.NOT_FOUND, "Not Found")
                return
            upstream = self.state.upstream_for(scope["path"])
            if upstream is not None:
                scope.setdefault("state", {})["route"] = proxied_route(scope["path"])
                settings = self.state.settings
                await proxy(
                    scope,
                    receive,
                    send,
                    upstream=upstream,
                    max_body_bytes=settings.max_body_bytes,
                    body_timeout=settings.body_timeout,
                    max_header_bytes=settings.max_header_bytes,
                )
                return
        await self.app(scope, receive, send)


def proxied(state: GatewayState) -> Callable[[Scope], bool]:
    """Whether ProxyDispatchMiddleware answers a request itself: a proxied path, or a path
    under one that it refuses for its dot segments (as the path is served)."""

    def answered_by_the_proxy(scope: Scope) -> bool:
        return state.upstream_for(served_path(scope["path"])) is not None

    return answered_by_the_proxy


def proxied_route(path: str) -> str:
    """The metrics' route label of a proxied path: its family, never the path itself."""
    if path.startswith("/auth"):
        return "/auth/*"
    if path.startswith("/api/users"):
        return "/api/users/*"
    return "/api/{user_id}/*"


def has_dot_segment(path: str) -> bool:
    """Whether a (percent-decoded) path has a `.` or `..` segment, `;parameters` aside.

    The client library resolves such segments before sending, so the service would get
    another path than the one routed: `/api/x/../../health` is the service's own /health.
    Encoded (`%2e%2e`) and parameter (`..;`) forms are refused too, as some servers read
    them as `..`. No route of the API needs a dot segment.
    """
    if "." not in path:
        return False
    return any(segment.split(";", 1)[0] in {".", ".."} for segment in path.split("/"))


def security_headers(frame_ancestors: str) -> list[tuple[bytes, bytes]]:
    """Browser security headers for every response, proxied ones included.

    There is no X-Frame-Options: it cannot name several embedders, and the Space page must
    be able to frame the app. `frame-ancestors` says who may. A response's own
    Content-Security-Policy (the web app's) stays beside this one (SECURITY_HEADERS_BESIDE):
    browsers enforce every policy they get, so it can only narrow what ours allows.
    """
    return [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
        (b"content-security-policy", f"frame-ancestors {frame_ancestors}".encode()),
    ]


SECURITY_HEADERS_BESIDE = frozenset({b"content-security-policy"})


class JSONCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, refusing a preflight in the API's `{"detail": ...}` format
    rather than as plain text.

    A request without an Origin (not a browser's cross-origin one: curl, a server, a
    same-origin GET) has nothing to allow or refuse; its answer only gets `Vary: Origin`,
    as Starlette gives it, without Starlette's header objects around every response.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(name == b"origin" for name, _ in scope["headers"]):
            await super().__call__(scope, receive, send)
            return

        async def send_varying(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": vary_on_origin(message.get("headers", []))}
            await send(message)

        await self.app(scope, receive, send_varying)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in {"content-length", "content-type"}
        }
        detail = bytes(response.body).decode()  # "Disallowed CORS origin", for one
        return JSONResponse(
            error_body(ErrorCode.BAD_REQUEST, detail), status_code=400, headers=headers
        )


def vary_on_origin(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` with `Origin` added to their Vary, as Starlette's CORS adds it: one Vary
    header, where the first one was, naming the others' values and then Origin."""
    headers = list(headers)
    values = [value for name, value in headers if name == b"vary"]
    if not values:
        headers.append((b"vary", b"Origin"))
        return headers
    merged = (b"vary", b", ".join([*values, b"Origin"]))
    first = next(index for index, (name, _) in enumerate(headers) if name == b"vary")
    return [
        *headers[:first],
        merged,
        *(header for header in headers[first + 1 :] if header[0] != b"vary"),
    ]


def cors_origins(entries: list[str]) -> tuple[list[str], str | None]:
    """Exact origins, and one regex for wildcard ones (`https://*.vercel.app`).

    A `*` in an origin stands for one DNS label, so `https://*.vercel.app` admits
    `https://my-app.vercel.app` but not `https://evil.com/.vercel.app`.
    """
    exact = [entry for entry in entries if "*" not in entry or entry == "*"]
    patterns = [
        re.escape(entry).replace(r"\*", "[A-Za-z0-9-]+")
        for entry in entries
        if "*" in entry and entry != "*"
    ]
    return exact, ("|".join(patterns) if patterns else None)
