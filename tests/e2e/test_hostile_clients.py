"""Careless and hostile clients against every process of the live stack: forged log lines,
hang-ups, HEAD, and header limits on a service reached without the gateway."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import Stack
from tests.support.raw_http import raw_request
from tests.support.tokens import bearer, mint

pytestmark = pytest.mark.postgres


def _service_url(stack: Stack, port_variable: str) -> str:
    return f"http://127.0.0.1:{stack.env[port_variable]}"


async def _send_and_hang_up(url: str, data: bytes) -> None:
    host, port = url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()


def test_a_newline_or_nul_in_the_path_forges_no_log_line(stack: Stack) -> None:
    target = "/api/x%0Aforged-line%00%1b[31m/tasks"
    answer = asyncio.run(
        raw_request(stack.base_url, "GET", target, [("x-request-id", "e2e-forge-1")])
    )

    expected = ("gateway [e2e-forge-1] access", "tasks [e2e-forge-1] access")
    log = stack.log_once(lambda text: all(line in text for line in expected))
    lines = [line for line in log.splitlines() if "e2e-forge-1" in line]
    assert answer.status == 401
    assert {line.split(" ")[3] for line in lines} >= {"gateway", "tasks"}
    # Escaped, not dropped: the logged path still shows what came.
    assert all("/api/x\\x0aforged-line\\x00\\x1b[31m/tasks" in line for line in lines)
    assert not [line for line in log.splitlines() if line.startswith("forged-line")]
    assert "\x00" not in log
    assert "\x1b" not in log


@pytest.mark.parametrize(
    ("where", "port_variable"), [("gateway", "PORT"), ("auth", "AUTH_SERVICE_PORT")]
)
def test_a_client_hanging_up_mid_body_is_a_499_at_info(
    stack: Stack, where: str, port_variable: str
) -> None:
    request_id = f"e2e-hangup-{where}"
    head = (
        "POST /auth/login HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/json\r\n"
        f"Content-Length: 100\r\nX-Request-ID: {request_id}\r\n\r\n"
    )
    asyncio.run(_send_and_hang_up(_service_url(stack, port_variable), head.encode() + b'{"ema'))

    logged = f"{where} [{request_id}] access: POST /auth/login 499"
    log = stack.log_once(lambda text: logged in text)
    lines = [line for line in log.splitlines() if request_id in line]
    assert any(logged in line for line in lines), lines
    assert not [line for line in lines if " ERROR " in line or " WARNING " in line]
    assert "ClientDisconnect" not in log
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("port_variable", "path"),
    [
        ("PORT", "/health"),
        ("AUTH_SERVICE_PORT", "/health"),
        ("AUTH_SERVICE_PORT", "/health/live"),
        ("AUTH_SERVICE_PORT", "/openapi.json"),
        ("TASK_SERVICE_PORT", "/health"),
        ("TASK_SERVICE_PORT", "/docs"),
    ],
)
def test_every_process_answers_head_on_its_get_routes(
    stack: Stack, port_variable: str, path: str
) -> None:
    url = _service_url(stack, port_variable)
    get = asyncio.run(raw_request(url, "GET", path))
    head = asyncio.run(raw_request(url, "HEAD", path))

    assert head.status == get.status == 200
    assert head.body == b""
    assert head.headers["content-type"] == get.headers["content-type"]


def test_head_on_a_task_read_through_the_gateway(stack: Stack) -> None:
    with stack.client() as client:
        user = "e2e-head-user"
        token = mint(sub=user)
        client.post(f"/api/{user}/tasks", json={"title": "one"}, headers=bearer(token))
        get = client.get(f"/api/{user}/tasks", headers=bearer(token))
        head = client.head(f"/api/{user}/tasks", headers=bearer(token))

    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["x-total-count"] == get.headers["x-total-count"] == "1"
    assert head.headers["content-length"] == get.headers["content-length"]


@pytest.mark.parametrize("port_variable", ["AUTH_SERVICE_PORT", "TASK_SERVICE_PORT"])
def test_a_service_reached_directly_bounds_headers_too(stack: Stack, port_variable: str) -> None:
    url = _service_url(stack, port_variable)
    many = asyncio.run(raw_request(url, "GET", "/health", [(f"x-{n}", "v") for n in range(101)]))
    large = asyncio.run(raw_request(url, "GET", "/health", [("x-big", "a" * 40_000)]))
    fits = asyncio.run(raw_request(url, "GET", "/health", [(f"x-{n}", "v") for n in range(90)]))

    assert many.status == large.status == 431
    assert many.json() == {"detail": "Request headers too large", "code": "headers_too_large"}
    assert fits.status == 200
