"""The skeleton both services share: lifespan, middleware, error handlers and `/health`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI

from shared import __version__
from shared.database_startup import start_database
from shared.db import create_database
from shared.errors import install_error_handlers
from shared.health import router as health_router
from shared.logging import configure_logging
from shared.middleware import RequestContextMiddleware, UnhandledErrorMiddleware
from shared.migrations import upgrade_database
from shared.settings import ServiceSettings
from shared.tokens import TokenVerifier

logger = logging.getLogger(__name__)


def create_service_app(
    *,
    name: str,
    title: str,
    description: str,
    settings: ServiceSettings,
    schema: str,
    migrations_dir: Path,
    routers: Sequence[APIRouter],
    verifier: TokenVerifier,
    openapi_tags: list[dict[str, Any]] | None = None,
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> FastAPI:
    """A FastAPI app for one service, migrating its own schema at start-up.

    `on_shutdown` closes what the service opened besides the database and the verifier.
    """
    configure_logging(settings.log_level, name)
    database = create_database(settings.database_config(), schema=schema, name=name)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for warning in settings.startup_warnings():
            logger.warning("%s", warning)
        logger.info("Storage: %s at %s", database.kind, database.location)
        await start_database(database, lambda: upgrade_database(database, migrations_dir))
        try:
            yield
        finally:
            for close in on_shutdown:
                await close()
            await verifier.aclose()
            await database.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version=__version__,
        lifespan=lifespan,
        openapi_tags=openapi_tags,
        # Behind TLS-terminating proxies a slash redirect would send browsers to http://.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.token_verifier = verifier
    # Innermost first: an unhandled error's 500 still passes through RequestContext.
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(RequestContextMiddleware)
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    app.include_router(health_router)
    return app
