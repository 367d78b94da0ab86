"""`GET /health` for a service with a database, and `GET /health/live` for probes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import event

from shared.database_url import DatabaseKind
from shared.db import Database

logger = logging.getLogger(__name__)

PING_TIMEOUT_SECONDS = 3.0
# A database that answered is taken as up for this long: however often people, monitors and
# the gateway's aggregate call /health, each process queries at most once per interval,
# which lets a Neon compute suspend when nothing else uses it. A failure is never kept, and a
# database error met by any request forgets the last answer, so an outage shows at once.
DATABASE_ANSWER_KEPT_SECONDS = 10.0


class DatabaseCheck:
    """The database's health, queried at most once per interval and once at a time."""

    def __init__(self, database: Database, kept_seconds: float) -> None:
        self._database = database
        self._kept_seconds = kept_seconds
        self._answered_at: float | None = None
        self._running: asyncio.Future[bool] | None = None
        # Fired for every failed statement and connection attempt, unwrapped ones included.
        event.listen(database.engine.sync_engine, "handle_error", self._forget)

    def _forget(self, _context: Any) -> None:
        self._answered_at = None

    async def healthy(self) -> bool:
        """True when the database answered a real query within the interval."""
        loop = asyncio.get_running_loop()
        if self._answered_at is not None and loop.time() - self._answered_at < self._kept_seconds:
            return True
        # Callers arriving while a query runs share it rather than queue their own.
        if self._running is None:
            self._running = asyncio.ensure_future(self._query())
            self._running.add_done_callback(self._finished)
        return await asyncio.shield(self._running)

    def _finished(self, _future: asyncio.Future[bool]) -> None:
        self._running = None

    async def _query(self) -> bool:
        try:
            await asyncio.wait_for(self._database.ping(), timeout=PING_TIMEOUT_SECONDS)
        except Exception as exc:  # any failure to answer is "unavailable" here
            logger.warning("Health check: database unavailable (%s)", type(exc).__name__)
            return False
        self._answered_at = asyncio.get_running_loop().time()
        return True


def database_check(app: FastAPI) -> DatabaseCheck:
    """The app's database check, made on first use."""
    check: DatabaseCheck | None = getattr(app.state, "database_check", None)
    if check is None:
        check = DatabaseCheck(app.state.database, DATABASE_ANSWER_KEPT_SECONDS)
        app.state.database_check = check
    return check


router = APIRouter(tags=["health"])


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unavailable"]
    storage: DatabaseKind
    warning: str | None = None


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "The database is unreachable"}},
)
async def health(request: Request) -> JSONResponse:
    """200 when a real query succeeded (within the last few seconds); 503 when the database
    cannot answer. For people and monitors: probes call `/health/live`."""
    database: Database = request.app.state.database
    healthy = await database_check(request.app).healthy()
    body = HealthResponse(
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


class LivenessResponse(BaseModel):
    status: Literal["ok"]


@router.get("/health/live", response_model=LivenessResponse)
async def liveness() -> LivenessResponse:
    """200 while the process serves requests; checks no dependency (for liveness probes)."""
    return LivenessResponse(status="ok")
