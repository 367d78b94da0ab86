"""Builds the gateway's ASGI app."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware import Middleware

from gateway.middleware import (
    SECURITY_HEADERS_BESIDE,
    JSONCORSMiddleware,
    ProxyDispatchMiddleware,
    cors_origins,
    proxied,
    security_headers,
)
from gateway.openapi import OpenAPICache
from gateway.routes import API_TITLE, router
from gateway.settings import GatewaySettings
from gateway.state import GatewayState
from gateway.upstream import open_upstream
from shared import __version__
from shared.app import create_base_app, liveness_router
from shared.errors import install_error_handlers
from shared.settings import load_settings

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
    timeouts = {
        "connect_timeout": settings.upstream_connect_timeout,
        "timeout": settings.upstream_timeout,
        "probe_timeout": settings.health_timeout,
    }
    auth = open_upstream("Auth service", settings.auth_service_url, **timeouts)
    tasks = open_upstream("Task service", settings.task_service_url, **timeouts)
    # The gateway's own part of the merged document: its routes and the base app's.
    own_document = get_openapi(
        title=API_TITLE,
        version=__version__,
        description=DESCRIPTION,
        routes=[*router.routes, *liveness_router.routes],
    )
    state = GatewayState(
        settings=settings,
        auth=auth,
        tasks=tasks,
        openapi=OpenAPICache(own_document, {"Auth": auth, "Tasks": tasks}),
    )
    exact, pattern = cors_origins(settings.allowed_origins)
    app = create_base_app(
        name="gateway",
        title=API_TITLE,
        description=DESCRIPTION,
        settings=settings,
        state=state,
        routers=[router],
        startup=[state.start],
        shutdown=[state.aclose],
        # Security headers on every answer, set with the request id in one place.
        response_headers=security_headers(settings.frame_ancestors),
        response_headers_beside=SECURITY_HEADERS_BESIDE,
        # CORS answers preflights itself.
        middleware=[
            Middleware(
                JSONCORSMiddleware,
                allow_origins=exact,
                allow_origin_regex=pattern,
                allow_credentials=True,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                expose_headers=[
                    "X-Request-ID",
                    "X-Total-Count",
                    "X-Next-Cursor",
                    "Link",
                    "Retry-After",
                ],
                max_age=600,
            ),
        ],
        # Inside the 500 for unhandled errors: a failure of the proxy gets the API's 500.
        inner_middleware=[Middleware(ProxyDispatchMiddleware, state=state)],
        # What it answers needs none of FastAPI's own layers.
        shortcut=proxied(state),
        docs=False,
        metrics_token=settings.metrics_token,
        public_metrics=False,
    )
    # The gateway's own answers (an unknown path, a method a route does not serve) in the
    # API's error format too; it has no database, so no database handlers.
    install_error_handlers(app, database=False)
    return app
