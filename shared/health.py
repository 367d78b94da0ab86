"""`GET /health` for a service with a database."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from shared.app import HealthResponse
from shared.database_url import DatabaseKind
from shared.db import Database
from shared.deps import ServiceStateDep

logger = logging.getLogger(__name__)

PING_TIMEOUT_SECONDS = 3.0

router = APIRouter(tags=["health"])


class ServiceHealthResponse(HealthResponse):
    database: Literal["ok", "unavailable"]
    storage: DatabaseKind
    # True when the data will not survive a restart (SQLite outside persistent storage).
    storage_ephemeral: bool = False
    warning: str | None = None


@router.get(
    "/health",
    response_model=ServiceHealthResponse,
    responses={503: {"model": ServiceHealthResponse, "description": "The database is unreachable"}},
)
async def health(state: ServiceStateDep) -> JSONResponse:
    """200 after a real query succeeds; 503 when the database cannot answer."""
    database = state.database
    try:
        await asyncio.wait_for(database.ping(), timeout=PING_TIMEOUT_SECONDS)
        healthy = True
    except Exception as exc:  # any failure to answer is "unavailable" here
        logger.warning("Health check: database unavailable (%s)", type(exc).__name__)
        healthy = False
    body = ServiceHealthResponse(
        status="ok" if healthy else "unavailable",
        database="ok" if healthy else "unavailable",
        storage=database.kind,
        storage_ephemeral=database.ephemeral,
        warning=_storage_warning(database),
    )
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


def _storage_warning(database: Database) -> str | None:
    if database.ephemeral:
        return (
            "Ephemeral storage: the SQLite files are not on persistent storage (/data) and "
            "are lost on restart; set DATA_DIR or DATABASE_URL"
        )
    if database.kind == "sqlite":
        return "Embedded SQLite storage: data lives in local files on this machine"
    return None
