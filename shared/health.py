"""`GET /health` for a service with a database."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from shared.app import HealthResponse
from shared.database_url import DatabaseKind
from shared.deps import ServiceStateDep

logger = logging.getLogger(__name__)

PING_TIMEOUT_SECONDS = 3.0

router = APIRouter(tags=["health"])


class ServiceHealthResponse(HealthResponse):
    database: Literal["ok", "unavailable"]
    storage: DatabaseKind
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
        warning=(
            "Embedded SQLite storage: data lives in local files on this machine"
            if database.kind == "sqlite"
            else None
        ),
    )
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)
