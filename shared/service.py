"""What both services add to the base app: migrations at start-up, `/health`, error handlers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI

from shared.app import create_base_app
from shared.db import Database, is_database_unavailable
from shared.deps import ServiceState
from shared.errors import install_error_handlers
from shared.health import router as health_router
from shared.metrics import watch_pool
from shared.migrations import upgrade_database

logger = logging.getLogger(__name__)

# How long start-up waits for an unreachable database (a cold Neon compute, a database
# container still booting) before giving up and letting the process supervisor restart us.
STARTUP_DATABASE_WAIT_SECONDS = 30.0


def create_service_app(
    state: ServiceState[Any],
    *,
    name: str,
    title: str,
    description: str,
    migrations_dir: Path,
    routers: Sequence[APIRouter],
    openapi_tags: list[dict[str, Any]] | None = None,
) -> FastAPI:
    """A FastAPI app for one service, migrating its own schema at start-up."""
    settings = state.settings
    database = state.database

    async def start() -> None:
        for warning in settings.startup_warnings():
            logger.warning("%s", warning)
        logger.info("Storage: %s at %s", database.kind, database.location)
        await _migrate_when_reachable(database, migrations_dir)

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
    )
    install_error_handlers(app)
    watch_pool("database", name, database.pool_counts)
    return app


async def _migrate_when_reachable(database: Database, migrations_dir: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_DATABASE_WAIT_SECONDS
    delay = 0.5
    while True:
        try:
            await upgrade_database(database, migrations_dir)
            return
        except Exception as exc:
            if not is_database_unavailable(exc) or loop.time() + delay > deadline:
                raise
            logger.warning("Database unreachable at start-up (%s); retrying", type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
