"""The gateway's own endpoints: `/`, `/health`, and the merged `/docs` and `/openapi.json`.

`/health/live` comes with the base app, as in every process.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

import aiohttp
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from gateway.state import GatewayState
from gateway.upstream import Upstream
from shared import __version__
from shared.app import HealthResponse, state_of

router = APIRouter()

API_TITLE = "Todo API"


def _state(request: Request) -> GatewayState:
    return state_of(request.app, GatewayState)


class RootResponse(BaseModel):
    service: str
    version: str
    docs: str
    health: str


STATIC_DIR = Path(__file__).parent / "static"
# The web app's page runs this gateway's own script and styles only, and talks to this origin
# only; who may frame it is the security headers middleware's `frame-ancestors`.
APP_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'"
)
router.mount("/assets", StaticFiles(directory=STATIC_DIR / "assets"), name="assets")


@router.get(
    "/",
    response_model=RootResponse,
    responses={200: {"content": {"text/html": {}}, "description": "The web app to browsers"}},
    tags=["gateway"],
)
async def root(request: Request) -> Response:
    """The web app to browsers (`Accept: text/html`); what this is, as JSON, to anyone else."""
    vary = {"Vary": "Accept"}
    if "text/html" in request.headers.get("accept", ""):
        page_headers = {**vary, "Content-Security-Policy": APP_CSP, "Cache-Control": "no-cache"}
        return FileResponse(STATIC_DIR / "index.html", headers=page_headers)
    body = RootResponse(
        service="Todo API gateway", version=__version__, docs="/docs", health="/health"
    )
    return JSONResponse(body.model_dump(), headers=vary)


class StackHealthResponse(HealthResponse):
    # "busy": every service is up, and one has every proxied connection in use.
    status: Literal["ok", "busy", "unavailable"]  # type: ignore[assignment]
    services: dict[str, dict[str, Any]]


async def _service_health(upstream: Upstream) -> tuple[bool, dict[str, Any]]:
    # The probe client's timeouts are HEALTH_TIMEOUT.
    try:
        status, body = await upstream.probe("/health")
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False, {"status": "unreachable"}
    if not isinstance(body, dict):
        return False, {"status": "invalid response"}
    healthy = status == 200 and body.get("status") == "ok"
    if healthy and upstream.load.full:
        # Up, but every proxied connection to it is taken: new requests get 503 busy.
        body = {**body, "status": "busy", "in_flight": upstream.load.in_flight}
    return healthy, body


@router.get(
    "/health",
    response_model=StackHealthResponse,
    responses={503: {"model": StackHealthResponse, "description": "A service is down"}},
    tags=["gateway"],
)
async def health(request: Request) -> JSONResponse:
    """The gateway and each service, checked in parallel: 200 when all are up.

    A service that is up but has every proxied connection in use is `busy` (still 200: a
    restart would not help it).
    """
    state = _state(request)
    (auth_ok, auth), (tasks_ok, tasks) = await asyncio.gather(
        _service_health(state.auth), _service_health(state.tasks)
    )
    healthy = auth_ok and tasks_ok
    busy = any(service.get("status") == "busy" for service in (auth, tasks))
    body = StackHealthResponse(
        status=("busy" if busy else "ok") if healthy else "unavailable",
        services={"gateway": {"status": "ok"}, "auth": auth, "tasks": tasks},
    )
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(await _state(request).openapi.get())


@router.get("/docs", include_in_schema=False)
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{API_TITLE} - Swagger UI",
        swagger_ui_parameters={"persistAuthorization": True},
    )


@router.get("/redoc", include_in_schema=False)
async def redoc() -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title=f"{API_TITLE} - ReDoc")
