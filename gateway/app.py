"""Builds the gateway's ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.middleware import (
    JSONCORSMiddleware,
    ProxyDispatchMiddleware,
    SecurityHeadersMiddleware,
    cors_origins,
)
from gateway.openapi import OpenAPICache
from gateway.routes import API_TITLE, router
from gateway.settings import GatewaySettings
from gateway.state import GatewayState
from gateway.upstream import open_upstream
from shared import __version__
from shared.logging import configure_logging
from shared.middleware import RequestContextMiddleware, UnhandledErrorMiddleware
from shared.settings import load_settings

logger = logging.getLogger(__name__)

DESCRIPTION = """\
The whole Todo API behind one URL.

1. `POST /auth/register` or `POST /auth/login` returns an `access_token`
   (the **Authorize** button signs in with your email as the username).
2. Send it as `Authorization: Bearer <token>` to `/api/users/me` and `/api/{user_id}/tasks`,
   where `user_id` is the `user.id` of the login response.
3. `POST /auth/refresh` trades the `refresh_token` for a new pair before the access token expires.
"""


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The gateway; settings come from the environment unless given."""
    settings = settings or load_settings(GatewaySettings)
    configure_logging(settings.log_level, "gateway")
    timeouts = {
        "connect_timeout": settings.upstream_connect_timeout,
        "timeout": settings.upstream_timeout,
        "probe_timeout": settings.health_timeout,
    }
    auth = open_upstream("Auth service", settings.auth_service_url, **timeouts)
    tasks = open_upstream("Task service", settings.task_service_url, **timeouts)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if "*" in settings.allowed_origins:
            logger.warning("ALLOWED_ORIGINS contains '*': any website may call this API")
        # The services may still be starting: fetch their documents without holding up ours.
        warm_up = asyncio.create_task(state.openapi.warm_up())
        try:
            yield
        finally:
            warm_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warm_up
            await state.openapi.aclose()
            await auth.aclose()
            await tasks.aclose()

    app = FastAPI(
        title=API_TITLE,
        description=DESCRIPTION,
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
    )
    app.include_router(router)
    state = GatewayState(
        settings=settings,
        auth=auth,
        tasks=tasks,
        openapi=OpenAPICache(app.openapi(), {"Auth": auth, "Tasks": tasks}),
    )
    app.state.gateway = state

    # Added innermost first: requests meet RequestContext, then security headers, then
    # CORS (which answers preflights itself), then the 500 for unhandled errors (inside the
    # others, so that answer gets their headers too), then the dispatch to a service or our
    # routes.
    app.add_middleware(ProxyDispatchMiddleware, state=state)
    app.add_middleware(UnhandledErrorMiddleware)
    exact, pattern = cors_origins(settings.allowed_origins)
    app.add_middleware(
        JSONCORSMiddleware,
        allow_origins=exact,
        allow_origin_regex=pattern,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID", "X-Total-Count", "X-Next-Cursor", "Link", "Retry-After"],
        max_age=600,
    )
    app.add_middleware(SecurityHeadersMiddleware, frame_ancestors=settings.frame_ancestors)
    app.add_middleware(RequestContextMiddleware)
    return app
