"""What both services add to the base app: migrations at start-up, `/health`, error handlers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.middleware import Middleware

from shared.app import create_base_app
from shared.database_startup import start_database
from shared.deps import ServiceState
from shared.errors import install_error_handlers
from shared.health import router as health_router
from shared.metrics import watch_pool
from shared.schema_upgrade import upgrade_schema

logger = logging.getLogger(__name__)


def create_service_app(
    state: ServiceState[Any],
    *,
    name: str,
    title: str,
    description: str,
    migrations_dir: Path,
    routers: Sequence[APIRouter],
    openapi_tags: list[dict[str, Any]] | None = None,
    router_middleware: Sequence[Middleware] = (),
) -> FastAPI:
    """A FastAPI app for one service, migrating its own schema at start-up.

    `router_middleware` goes in front of the router, as `create_base_app` says."""
    settings = state.settings
    database = state.database

    async def start() -> None:
        for warning in settings.startup_warnings():
            logger.warning("%s", warning)
        logger.info("Storage: %s at %s", database.kind, database.location)
        await start_database(
            database,
            lambda: upgrade_schema(
                database,
                migrations_dir,
                service=name,
                log_level=settings.log_level,
                log_format=settings.log_format,
            ),
        )

    app = create_base_app(
        name=name,
        title=title,
        description=description,
        settings=settings,
        state=state,
        routers=[*routers, health_router],
        startup=[start],
        shutdown=[state.aclose],
        openapi_tags=openapi_tags,
        router_middleware=router_middleware,
    )
    install_error_handlers(app)
    watch_pool("database", name, database.pool_counts)
    return app
