"""The one app factory all three processes are built on.

It fixes what must be the same everywhere: logging, the lifespan (start-up hooks, then
teardown that runs even when start-up failed), the garbage collector's settings while the
app serves, the middleware order, trailing slashes and the liveness route. Each process adds
its routes, its own middleware and its state: one typed object, set here once and read back
with `state_of`.

This module imports no ORM: the gateway, which has no database, is built on it too.
"""

from __future__ import annotations

import gc
import hmac
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, FastAPI, Header, Response
from pydantic import BaseModel, SecretStr
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from shared import __version__
from shared.errors import ErrorCode, error_response
from shared.logging import configure_logging
from shared.metrics import render_metrics
from shared.middleware import RequestContextMiddleware, UnhandledErrorMiddleware
from shared.settings import CommonSettings

logger = logging.getLogger(__name__)

# FastAPI checks the annotation of every route's fields against pydantic.v1's BaseModel, to
# refuse v1 models, importing pydantic.v1 to do so: 1.2 MiB of each process's memory and
# 70 ms of its start-up (bench/history.md), for a check nothing here can fail. FastAPI
# expects a pydantic.v1 that cannot be imported, and then answers no; nothing else here
# imports it. Set before any route is made: the route modules all import this one.
sys.modules.setdefault("pydantic.v1", None)  # type: ignore[arg-type]

Hook = Callable[[], Awaitable[None]]
StateT = TypeVar("StateT")

# Where the process's state lives on `app.state`; only `attach_state` and `state_of` use it.
_STATE_ATTRIBUTE = "process"

# While an app serves, the collector scans its young objects once this many more container
# objects were made than freed (CPython's default is 700). The requests in flight hold that
# many between them, next to none of them garbage: at 700 the saturated gateway collected
# every 17 requests to find almost nothing, and the full collections this led to scanned
# every object start-up made (bench/history.md: 34 us of each proxied request).
YOUNG_COLLECTION_THRESHOLD = 7_000


@contextmanager
def serving_heap() -> Iterator[None]:
    """The garbage collector's settings while an app serves: what exists at start-up (the
    modules, routes, schemas, pools) is frozen out of its scans, and young collections
    are rarer. Both are undone on leaving.

    Garbage is collected first, so none of it is kept for as long as the app serves.
    """
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        # Back to the collector's care: what start-up made and the app no longer uses
        # (a test's app, after it) can be collected again.
        gc.unfreeze()


class HealthResponse(BaseModel):
    """Whether a process can serve; `/health` of each process extends it."""

    status: Literal["ok", "unavailable"]


liveness_router = APIRouter(tags=["health"])


@liveness_router.get("/health/live", response_model=HealthResponse)
async def liveness() -> HealthResponse:
    """200 while the process serves requests; checks no dependency (for liveness probes)."""
    return HealthResponse(status="ok")


def served_path(path: str) -> str:
    """The path a request is served as: without trailing slashes (`/` stays `/`)."""
    if len(path) > 1 and path.endswith("/"):
        return path.rstrip("/") or "/"
    return path


class TrailingSlashMiddleware:
    """Serves `/path/` exactly as `/path`, without a redirect.

    Behind a TLS-terminating proxy a redirect would send browsers to `http://`, and clients
    that add a slash (many do) would otherwise get a 404. `/` itself is left alone.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                # A new scope: the access log (outside) still shows the path as it was sent.
                scope = {**scope, "path": served_path(path)}
                raw_path = scope.get("raw_path")
                if raw_path:
                    scope["raw_path"] = raw_path.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)


class _BaseApp(FastAPI):
    """FastAPI with a shortcut for the requests `shortcut(scope)` picks: they meet the same
    middleware as every request, and the innermost one answers them, without FastAPI's own
    layers around that middleware (its last-resort 500, its telemetry hooks and body limit,
    none of which such an answer needs) or its router.

    Each layer costs every await of the request a frame: the gateway's proxied requests,
    nearly all it serves, take the shortcut.
    """

    shortcut: Callable[[Scope], bool] | None = None
    _shortcut_stack: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.shortcut is not None and scope["type"] == "http" and self.shortcut(scope):
            if self._shortcut_stack is None:
                self._shortcut_stack = self._build_shortcut_stack()
            scope["app"] = self
            await self._shortcut_stack(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _build_shortcut_stack(self) -> ASGIApp:
        app: ASGIApp = _unanswered
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app


async def _unanswered(scope: Scope, receive: Receive, send: Send) -> None:
    # Under UnhandledErrorMiddleware: a shortcut its middleware did not answer is a 500.
    raise RuntimeError(f"no middleware answered {scope['method']} {scope['path']}")


def attach_state(app: Starlette, state: object) -> None:
    """Give the app its state; once only, so no two parts of a process can disagree."""
    if hasattr(app.state, _STATE_ATTRIBUTE):
        raise RuntimeError("the app's state is already set")
    setattr(app.state, _STATE_ATTRIBUTE, state)


def state_of(app: Starlette, kind: type[StateT]) -> StateT:
    """The state the factory set on `app`, checked to be a `kind`."""
    state = getattr(app.state, _STATE_ATTRIBUTE, None)
    if not isinstance(state, kind):
        raise TypeError(f"the app's state is {type(state).__name__}, not {kind.__name__}")
    return state


def create_base_app(
    *,
    name: str,
    title: str,
    description: str,
    settings: CommonSettings,
    state: object,
    routers: Sequence[APIRouter],
    startup: Sequence[Hook] = (),
    shutdown: Sequence[Hook] = (),
    middleware: Sequence[Middleware] = (),
    inner_middleware: Sequence[Middleware] = (),
    router_middleware: Sequence[Middleware] = (),
    openapi_tags: list[dict[str, Any]] | None = None,
    docs: bool = True,
    metrics_token: SecretStr | None = None,
    public_metrics: bool = True,
    response_headers: Sequence[tuple[bytes, bytes]] = (),
    response_headers_beside: frozenset[bytes] = frozenset(),
    shortcut: Callable[[Scope], bool] | None = None,
) -> FastAPI:
    """A FastAPI app with what every process shares.

    `startup` hooks run in order at start-up; `shutdown` hooks run in order at teardown, each
    one even if another failed (its error is logged), and also when start-up failed (what the
    factory opened must be closed either way). In between, the app serves under
    `serving_heap`.

    Requests meet RequestContext (request id, access log) first, then the trailing-slash
    rewrite, then `middleware` (outermost first), then the 500 for unhandled errors, then
    `inner_middleware`, whose failures that 500 therefore covers, then FastAPI's exception
    handlers, then `router_middleware` in front of the router: a shortcut there that answers
    some route's requests itself gets that route's error answers. `docs=False` leaves out
    `/docs`, `/redoc` and `/openapi.json` (the gateway serves its own).

    `/metrics` answers anyone when `public_metrics` (a service, on its own port); otherwise
    only `Authorization: Bearer <metrics_token>`, and 404 while no token is set.

    `response_headers` go on every response, replacing the app's own of those names but for
    `response_headers_beside` (RequestContextMiddleware adds them with the request id).

    Requests `shortcut(scope)` picks must be answered by `inner_middleware`: they meet all of
    the middleware above, but neither FastAPI's own layers around it nor the routes.
    """
    configure_logging(settings.log_level, name, settings.log_format)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            for start in startup:
                await start()
            with serving_heap():
                yield
        finally:
            for close in shutdown:
                try:
                    await close()
                except Exception:  # logged, so the next steps and the original error go on
                    logger.exception("Shutdown step %s failed", close.__qualname__)

    app = _BaseApp(
        title=title,
        description=description,
        version=__version__,
        lifespan=lifespan,
        openapi_tags=openapi_tags,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        # TrailingSlashMiddleware serves both spellings; a redirect would leave TLS.
        redirect_slashes=False,
        # Metrics are Prometheus' (/metrics) and logs our own; FastAPI's OpenTelemetry would
        # otherwise look up the global providers on every request to find none configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        middleware=[
            Middleware(
                RequestContextMiddleware,
                headers=response_headers,
                beside=response_headers_beside,
            ),
            Middleware(TrailingSlashMiddleware),
            *middleware,
            # Inside the others, so its 500 still gets the request id and their headers.
            Middleware(UnhandledErrorMiddleware),
            *inner_middleware,
        ],
    )
    app.shortcut = shortcut
    attach_state(app, state)
    for router in routers:
        app.include_router(router)
    app.include_router(liveness_router)
    app.include_router(_metrics_router(metrics_token, public=public_metrics))
    for cls, args, kwargs in reversed(router_middleware):
        # What the router calls first (Starlette's Router runs its own middleware_stack).
        app.router.middleware_stack = cls(app.router.middleware_stack, *args, **kwargs)
    return app


def _metrics_router(token: SecretStr | None, *, public: bool) -> APIRouter:
    router = APIRouter()
    expected = f"Bearer {token.get_secret_value()}".encode() if token else None

    @router.get("/metrics", include_in_schema=False)
    async def metrics(authorization: Annotated[str | None, Header()] = None) -> Response:
        """Prometheus metrics of this process."""
        if not public:
            given = (authorization or "").encode()
            # Not 401: where metrics are closed, the public sees no such route at all.
            if expected is None or not hmac.compare_digest(given, expected):
                return error_response(ErrorCode.NOT_FOUND, "Not Found")
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    return router
