"""Prometheus metrics scraped from a real stack, and its JSON log lines."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import httpx2
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.e2e.conftest import Stack, start_stack, stop_promptly
from tests.support.asgi import serving
from tests.support.http_server import free_port
from tests.support.tokens import bearer

METRICS_TOKEN = "scrape-me-0123456789"
# supervisord's own lines: it has no JSON format of its own.
_SUPERVISORD_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBG|INFO|WARN|ERRO|CRIT) ")


@pytest.fixture(scope="module")
def json_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(
        tmp_path_factory.mktemp("metrics"), LOG_FORMAT="json", METRICS_TOKEN=METRICS_TOKEN
    )
    try:
        running.wait_healthy()
        yield running
    finally:
        stop_promptly(running)


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(text: str, metric: str, /, **labels: str) -> float:
    return _samples(text).get((metric, frozenset(labels.items())), 0.0)


def _journey(stack: Stack) -> str:
    """Sign up, add a task, list it, fail a sign-in; the user's id."""
    email = f"metrics-{uuid.uuid4().hex[:8]}@example.com"
    with stack.client() as client:
        signed_up = client.post(
            "/auth/register", json={"email": email, "password": "correct horse"}
        )
        assert signed_up.status_code == 201, signed_up.text
        user_id: str = signed_up.json()["user"]["id"]
        auth = bearer(signed_up.json()["access_token"])
        tasks = f"/api/{user_id}/tasks"
        assert client.post(tasks, headers=auth, json={"title": "Scrape"}).status_code == 201
        assert client.get(tasks, headers=auth).status_code == 200
        assert client.get(tasks, headers=bearer("not-a-token")).status_code == 401
        wrong = client.post("/auth/login", json={"email": email, "password": "wrong horse"})
        assert wrong.status_code == 401
        return user_id


def test_each_process_counts_the_requests_it_served(json_stack: Stack) -> None:
    _journey(json_stack)
    auth_url = f"http://127.0.0.1:{json_stack.env['AUTH_SERVICE_PORT']}"

    tasks_text = httpx2.get(f"{json_stack.task_service_url}/metrics", timeout=5).text
    auth_text = httpx2.get(f"{auth_url}/metrics", timeout=5).text
    with json_stack.client() as client:
        gateway = client.get("/metrics", headers=bearer(METRICS_TOKEN))

    route = "/api/{user_id}/tasks"
    assert _value(tasks_text, "http_requests_total", method="GET", route=route, status="200") >= 1
    assert _value(tasks_text, "http_requests_total", method="POST", route=route, status="201") >= 1
    assert _value(tasks_text, "http_request_duration_seconds_count", method="GET", route=route) >= 1
    assert _value(tasks_text, "token_refusals_total", reason="malformed token") >= 1
    assert _value(tasks_text, "connection_pool", kind="database", name="tasks", state="size") >= 1
    assert _value(auth_text, "auth_login_failures_total") >= 1
    assert (
        _value(auth_text, "http_requests_total", method="POST", route="/auth/login", status="401")
        >= 1
    )
    assert gateway.status_code == 200
    assert gateway.headers["content-type"].startswith("text/plain")
    assert _value(gateway.text, "http_requests_in_flight") >= 1  # this very scrape
    proxied = {"method": "GET", "route": "/api/{user_id}/*", "status": "200"}
    assert _value(gateway.text, "http_requests_total", **proxied) >= 1
    assert (
        _value(gateway.text, "connection_pool", kind="upstream", name="Task service", state="limit")
        >= 1
    )
    # No raw path becomes a label: user ids would make a time series per user.
    user_paths = [line for line in tasks_text.splitlines() if 'route="/api/' in line]
    assert user_paths
    assert all("{user_id}" in line for line in user_paths)


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {METRICS_TOKEN}"])
def test_the_public_metrics_need_the_token(json_stack: Stack, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with json_stack.client() as client:
        response = client.get("/metrics", headers=headers)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def test_the_gateway_counts_a_service_it_cannot_reach() -> None:
    settings = GatewaySettings(task_service_url=f"http://127.0.0.1:{free_port()}")
    labels = {"service": "Task service", "kind": "refused"}
    before = REGISTRY.get_sample_value("gateway_upstream_errors_total", labels) or 0.0
    app = create_app(settings)
    async with serving(app, "http://gateway.test") as client:
        response = await client.get("/api/someone/tasks")

    assert response.status_code == 502
    assert REGISTRY.get_sample_value("gateway_upstream_errors_total", labels) == before + 1


async def test_without_a_token_the_public_metrics_do_not_exist() -> None:
    app = create_app(GatewaySettings())
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        response = await client.get("/metrics", headers=bearer(METRICS_TOKEN))

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_json_logs_are_one_object_per_line(json_stack: Stack) -> None:
    _journey(json_stack)
    log = json_stack.log_once(lambda text: '"status": 401' in text)

    entries = []
    for line in log.splitlines():
        if _SUPERVISORD_LINE.match(line):
            continue
        entries.append(json.loads(line))  # every other line is one whole object

    assert {entry["process"] for entry in entries} >= {"gateway", "auth", "tasks"}
    access = [e for e in entries if e["logger"] == "access" and e["path"] == "/auth/login"]
    assert access
    for entry in access:
        assert set(entry) >= {"time", "level", "request_id", "message", "method", "status"}
        assert entry["method"] == "POST"
        assert isinstance(entry["duration_ms"], float)
    assert {e["status"] for e in access} == {401}


def test_json_log_values_cannot_start_a_line(json_stack: Stack) -> None:
    with json_stack.client() as client:
        client.get("/api/x%0A%7B%22forged%22%3A1%7D/tasks")
    log = json_stack.log_once(lambda text: "forged" in text)

    forged = [line for line in log.splitlines() if "forged" in line]
    assert forged
    for line in forged:
        assert json.loads(line)["path"].startswith("/api/x\n")
