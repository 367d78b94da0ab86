"""The whole stack under supervisord, through the gateway only, on PostgreSQL."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx2
import pytest

from tests.e2e.conftest import Stack
from tests.support.tokens import BETTER_AUTH_SECRET, bearer, mint

pytestmark = pytest.mark.postgres


def _register(client: httpx2.Client, email: str) -> dict[str, Any]:
    response = client.post("/auth/register", json={"email": email, "password": "correct horse"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_user_signs_up_and_manages_tasks_through_the_gateway(stack: Stack) -> None:
    with stack.client() as client:
        registered = _register(client, "e2e-journey@example.com")
        user_id = registered["user"]["id"]

        login = client.post(
            "/auth/login", json={"email": "e2e-journey@example.com", "password": "correct horse"}
        )
        assert login.status_code == 200
        auth = bearer(login.json()["access_token"])
        assert client.get("/api/users/me", headers=auth).json()["id"] == user_id

        refreshed = client.post(
            "/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
        )
        assert refreshed.status_code == 200
        auth = bearer(refreshed.json()["access_token"])

        tasks = f"/api/{user_id}/tasks"
        created = [
            client.post(tasks, headers=auth, json=body).json()
            for body in (
                {"title": "Write report", "priority": "high", "tags": ["work"]},
                {"title": "Buy milk", "priority": "low", "tags": ["home"]},
                {"title": "Plan trip", "description": "Report back to family"},
            )
        ]
        assert [task["id"] for task in created] == sorted(task["id"] for task in created)

        listing = client.get(tasks, headers=auth, params={"q": "report", "sort": "title"})
        assert listing.status_code == 200
        assert [t["title"] for t in listing.json()] == ["Plan trip", "Write report"]
        assert listing.headers["x-total-count"] == "2"
        by_tag = client.get(tasks, headers=auth, params={"tag": "home"}).json()
        assert [t["title"] for t in by_tag] == ["Buy milk"]

        task_url = f"{tasks}/{created[0]['id']}"
        toggled = client.patch(f"{task_url}/complete", headers=auth)
        assert toggled.json()["completed"] is True
        pending = client.get(tasks, headers=auth, params={"status": "pending"}).json()
        assert {t["title"] for t in pending} == {"Buy milk", "Plan trip"}
        edited = client.put(task_url, headers=auth, json={"title": "Write the report"})
        assert edited.json()["title"] == "Write the report"
        assert client.delete(task_url, headers=auth).status_code == 204
        assert client.get(task_url, headers=auth).status_code == 404

        refresh_token = refreshed.json()["refresh_token"]
        assert client.post("/auth/logout", json={"refresh_token": refresh_token}).status_code == 204
        assert (
            client.post("/auth/refresh", json={"refresh_token": refresh_token}).status_code == 401
        )


def test_a_token_minted_by_the_frontend_is_accepted(stack: Stack) -> None:
    token = mint(BETTER_AUTH_SECRET, sub="ba-e2e-user", type=None)
    with stack.client() as client:
        created = client.post(
            "/api/ba-e2e-user/tasks", headers=bearer(token), json={"title": "From Next.js"}
        )
        listed = client.get("/api/ba-e2e-user/tasks", headers=bearer(token))

    assert created.status_code == 201
    assert [t["title"] for t in listed.json()] == ["From Next.js"]


def test_users_cannot_reach_each_others_tasks(stack: Stack) -> None:
    with stack.client() as client:
        alice = _register(client, "e2e-alice@example.com")
        bob = _register(client, "e2e-bob@example.com")
        alice_auth, bob_auth = bearer(alice["access_token"]), bearer(bob["access_token"])
        alice_tasks = f"/api/{alice['user']['id']}/tasks"
        bob_tasks = f"/api/{bob['user']['id']}/tasks"
        secret = client.post(alice_tasks, headers=alice_auth, json={"title": "Alice's"}).json()

        assert client.get(alice_tasks, headers=bob_auth).status_code == 403
        assert client.get(f"{bob_tasks}/{secret['id']}", headers=bob_auth).status_code == 404
        assert client.delete(f"{bob_tasks}/{secret['id']}", headers=bob_auth).status_code == 404
        assert client.get(f"{alice_tasks}/{secret['id']}", headers=alice_auth).status_code == 200


def test_docs_and_health_cover_both_services(stack: Stack) -> None:
    with stack.client() as client:
        health = client.get("/health")
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs")

    assert health.status_code == 200
    assert set(health.json()["services"]) == {"gateway", "auth", "tasks"}
    assert {"/auth/login", "/api/users/me", "/api/{user_id}/tasks"} <= set(spec["paths"])
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def test_request_id_reaches_every_log_line_of_the_request(stack: Stack) -> None:
    with stack.client() as client:
        registered = _register(client, "e2e-trace@example.com")
        user_id = registered["user"]["id"]
        response = client.get(
            f"/api/{user_id}/tasks",
            headers={**bearer(registered["access_token"]), "X-Request-ID": "e2e-trace-42"},
        )
        client.get("/api/users/me", headers={"X-Request-ID": "e2e-trace-43"})

    assert response.headers["x-request-id"] == "e2e-trace-42"
    expected = ("gateway [e2e-trace-42]", "tasks [e2e-trace-42]", "auth [e2e-trace-43]")
    log = stack.log_once(lambda text: all(line in text for line in expected))
    assert "gateway [e2e-trace-42]" in log
    assert "tasks [e2e-trace-42]" in log
    assert "auth [e2e-trace-43]" in log


def test_a_killed_task_service_comes_back_with_its_data(stack: Stack) -> None:
    with stack.client() as client:
        registered = _register(client, "e2e-crash@example.com")
        auth = bearer(registered["access_token"])
        tasks = f"/api/{registered['user']['id']}/tasks"
        for n in range(5):
            assert client.post(tasks, headers=auth, json={"title": f"t{n}"}).status_code == 201
        before = stack.pid("tasks")

        os.kill(before, signal.SIGKILL)

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                listing = client.get(tasks, headers=auth)
                if listing.status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            time.sleep(0.2)
        assert listing.status_code == 200
        assert sorted(t["title"] for t in listing.json()) == [f"t{n}" for n in range(5)]
        assert stack.pid("tasks") != before
