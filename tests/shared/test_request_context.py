"""Request ids: kept when sane, generated otherwise, echoed, and in every log line."""

from __future__ import annotations

import logging

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from shared.logging import configure_logging
from shared.middleware import RequestContextMiddleware
from tests.support.logs import write_waiting_lines

logger = logging.getLogger("tests.request_context")


async def _endpoint(request: Request) -> PlainTextResponse:
    logger.info("handling")
    return PlainTextResponse(request.scope["state"]["request_id"])


@pytest.fixture
async def client() -> httpx2.AsyncClient:
    app = RequestContextMiddleware(Starlette(routes=[Route("/", _endpoint)]))
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t")


@pytest.mark.parametrize("request_id", ["abc-123", "0f8fad5b-d9cb-469f-a165-70867728950e"])
async def test_sane_request_id_is_kept(client: httpx2.AsyncClient, request_id: str) -> None:
    response = await client.get("/", headers={"X-Request-ID": request_id})

    assert response.headers["x-request-id"] == request_id
    assert response.text == request_id


@pytest.mark.parametrize("request_id", ["", "a" * 129, "has space", "new\\nline", "<script>"])
async def test_insane_request_id_is_replaced(client: httpx2.AsyncClient, request_id: str) -> None:
    response = await client.get("/", headers={"X-Request-ID": request_id})

    generated = response.headers["x-request-id"]
    assert generated != request_id
    assert len(generated) == 32


async def test_each_request_without_id_gets_its_own(client: httpx2.AsyncClient) -> None:
    first = await client.get("/")
    second = await client.get("/")

    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_log_lines_carry_service_and_request_id(
    client: httpx2.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "unit")

    await client.get("/", headers={"X-Request-ID": "trace-me-1"})
    write_waiting_lines()

    lines = [line for line in capsys.readouterr().out.splitlines() if "trace-me-1" in line]
    assert any("tests.request_context: handling" in line for line in lines)
    assert any("access: GET / 200" in line for line in lines)
    assert all(" unit [trace-me-1] " in line for line in lines)
