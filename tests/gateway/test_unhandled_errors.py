"""A failure inside the gateway still answers through every middleware."""

from __future__ import annotations

import pytest

import gateway.middleware
from tests.gateway.conftest import GatewayFactory
from tests.support.logs import write_waiting_lines


async def test_an_unhandled_error_is_a_500_with_request_id_security_and_cors_headers(
    make_gateway: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def broken_proxy(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(gateway.middleware, "proxy", broken_proxy)
    async with make_gateway() as running, running.client() as client:
        response = await client.get(
            "/api/u/tasks",
            headers={"X-Request-ID": "trace-gw-500", "Origin": "http://localhost:3000"},
        )

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error", "code": "internal_error"}
    assert response.headers["x-request-id"] == "trace-gw-500"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    write_waiting_lines()
    errors = [line for line in capsys.readouterr().out.splitlines() if "Unhandled error" in line]
    assert errors
    assert all("[trace-gw-500]" in line for line in errors)
