"""`GET /health` for a service with a database, checked at most once per interval."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from shared.app import HealthResponse
from shared.database_url import DatabaseKind
from shared.db import Database
from shared.deps import ServiceStateDep

logger = logging.getLogger(__name__)

PING_TIMEOUT_SECONDS = 3.0
# A database that answered is taken as up for this long: however often people, monitors and
# the gateway's aggregate call /health, each process queries at most once per interval,
# which lets a Neon compute suspend when nothing else uses it (probes call /health/live). A
# failure is never kept, and a database error met by any request forgets the last answer,
# so an outage shows at once.
DATABASE_ANSWER_KEPT_SECONDS = 10.0


class DatabaseCheck:
    """The database's health, queried at most once per interval and once at a time."""

    def __init__(self, database: Database, kept_seconds: float) -> None:
        # Weak: the check lives as long as the engine, and must not keep the database alive.
        self._database = weakref.ref(database)
        self._kept_seconds = kept_seconds
        self._answered_at: float | None = None
        self._running: asyncio.Future[bool] | None = None
        database.on_failure(self._forget)

    def _forget(self) -> None:
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
        database = self._database()
        if database is None:
            return False
        try:
            await asyncio.wait_for(database.ping(), timeout=PING_TIMEOUT_SECONDS)
        except Exception as exc:  # any failure to answer is "unavailable" here
            logger.warning("Health check: database unavailable (%s)", type(exc).__name__)
            return False
        self._answered_at = asyncio.get_running_loop().time()
        return True


_checks: weakref.WeakKeyDictionary[Engine, DatabaseCheck] = weakref.WeakKeyDictionary()


def database_check(database: Database) -> DatabaseCheck:
    """The check of this database, made on first use."""
    engine = database.engine.sync_engine
    check = _checks.get(engine)
    if check is None:
        check = _checks[engine] = DatabaseCheck(database, DATABASE_ANSWER_KEPT_SECONDS)
    return check


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
    """200 when a real query succeeded (within the last few seconds); 503 when the database
    cannot answer. For people and monitors: probes call `/health/live`."""
    database = state.database
    healthy = await database_check(database).healthy()
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
