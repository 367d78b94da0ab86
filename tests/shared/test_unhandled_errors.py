"""An exception escaping an app: a 500 in the API's format that still carries the request id."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from shared.logging import configure_logging
from shared.middleware import RequestContextMiddleware, UnhandledErrorMiddleware
from task_service.app import create_app as create_task_app
from task_service.settings import TaskSettings
from tests.support.asgi import serving
from tests.support.logs import write_waiting_lines
from tests.support.tokens import SECRET_KEY


def _log_lines(capsys: pytest.CaptureFixture[str], marker: str) -> list[str]:
    write_waiting_lines()
    return [line for line in capsys.readouterr().out.splitlines() if marker in line]


async def test_a_service_answers_an_unhandled_error_with_a_500_that_keeps_the_request_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_task_app(
        TaskSettings(_env_file=None, data_dir=tmp_path, secret_key=SecretStr(SECRET_KEY))
    )

    async def broken() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/broken", broken)
    async with serving(app, "http://tasks.test") as client:
        response = await client.get("/broken", headers={"X-Request-ID": "trace-svc-500"})

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error", "code": "internal_error"}
    assert response.headers["x-request-id"] == "trace-svc-500"
    errors = _log_lines(capsys, "Unhandled error on GET /broken")
    assert errors
    assert all("[trace-svc-500]" in line for line in errors)


async def test_an_error_after_the_response_started_cuts_it_short_and_is_logged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def half_answer(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom")

    configure_logging("INFO", "unit")
    app = RequestContextMiddleware(UnhandledErrorMiddleware(half_answer))
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
        # Re-raised, so the server drops the connection rather than end a broken response.
        with pytest.raises(RuntimeError, match="boom"):
            await client.get("/", headers={"X-Request-ID": "trace-late"})
    errors = _log_lines(capsys, "Unhandled error on GET /")
    assert errors
    assert all("[trace-late]" in line for line in errors)
