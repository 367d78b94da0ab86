"""The image as Spaces and hardened hosts run it: the stack as uid 1000, data and signing key
kept on the volume, a read-only root with no capabilities, a refused configuration, and a
clean, quick stop, also while the database is unreachable."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import httpx2
import pytest

from tests.docker.conftest import Container, start
from tests.docker.daemon import Daemon
from tests.support.databases import drop_schema, rewrite_url, unique_schema
from tests.support.tcp_proxy import TcpProxy

SPACE_UID = 1000
STOP_SECONDS = 10
PASSWORD = "correct horse battery"


def _sign_up(client: httpx2.Client) -> tuple[str, str]:
    response = client.post(
        "/auth/register", json={"email": "space@example.com", "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return body["access_token"], body["user"]["id"]


def _titles(client: httpx2.Client, user_id: str, token: str) -> list[str]:
    response = client.get(f"/api/{user_id}/tasks", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return sorted(task["title"] for task in response.json())


def _stopped_cleanly(container: Container) -> None:
    elapsed, exit_code = container.stop()
    assert elapsed < STOP_SECONDS, f"docker stop took {elapsed:.1f} s"
    assert exit_code == 0, container.logs()


def test_as_a_space_runs_it_data_and_signing_key_survive_a_new_container(
    daemon: Daemon, image: str, tmp_path: Path
) -> None:
    # Spaces mount persistent storage at /data, owned by the uid the container runs as.
    volume = tmp_path / "data"
    volume.mkdir()
    os.chown(volume, SPACE_UID, SPACE_UID)
    mount = f"--volume={volume}:/data"

    first = start(daemon, image, {}, mount)
    first.wait_until_serving()
    with httpx2.Client(base_url=first.base_url, timeout=10) as client:
        token, user_id = _sign_up(client)
        headers = {"Authorization": f"Bearer {token}"}
        for title in ("water the plants", "call the plumber"):
            created = client.post(f"/api/{user_id}/tasks", json={"title": title}, headers=headers)
            assert created.status_code == 201, created.text
        assert _titles(client, user_id, token) == ["call the plumber", "water the plants"]
    uids = first.uids()
    # supervisord and three servers.
    assert len(uids) >= 4, uids
    assert set(uids.values()) == {SPACE_UID}
    first.wait_for_health("healthy")
    _stopped_cleanly(first)
    assert (volume / "secret_key").stat().st_uid == SPACE_UID

    second = start(daemon, image, {}, mount)
    second.wait_until_serving()
    with httpx2.Client(base_url=second.base_url, timeout=10) as client:
        login = client.post(
            "/auth/login", json={"email": "space@example.com", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        assert _titles(client, user_id, login.json()["access_token"]) == [
            "call the plumber",
            "water the plants",
        ]
        # Signed before the restart, with the key the first container left on the volume.
        assert _titles(client, user_id, token) == ["call the plumber", "water the plants"]
    _stopped_cleanly(second)


HARDENED = ("--read-only", "--tmpfs=/tmp", "--cap-drop=ALL", "--security-opt=no-new-privileges")


@pytest.mark.postgres
async def test_hardened_on_postgresql_it_serves_stays_healthy_through_an_outage_and_stops(
    daemon: Daemon, image: str, postgres_url: str, proxy: TcpProxy
) -> None:
    schemas = {"AUTH_DB_SCHEMA": unique_schema("auth"), "TASK_DB_SCHEMA": unique_schema("tasks")}
    env = {
        "APP_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": rewrite_url(postgres_url, port=proxy.port),
        "DB_CONNECT_TIMEOUT": "2",
        **schemas,
    }
    # The event loop must keep running while docker is called: it carries the proxy.
    container = await asyncio.to_thread(start, daemon, image, env, *HARDENED)
    try:
        await asyncio.to_thread(container.wait_until_serving)
        async with httpx2.AsyncClient(base_url=container.base_url, timeout=10) as client:
            registered = await client.post(
                "/auth/register", json={"email": "hardened@example.com", "password": PASSWORD}
            )
            assert registered.status_code == 201, registered.text
            body = registered.json()
            headers = {"Authorization": f"Bearer {body['access_token']}"}
            tasks_url = f"/api/{body['user']['id']}/tasks"
            created = await client.post(tasks_url, json={"title": "on postgres"}, headers=headers)
            assert created.status_code == 201, created.text
            await asyncio.to_thread(container.wait_for_health, "healthy")

            await proxy.cut()
            listed = await client.get(tasks_url, headers=headers)
            health = await client.get("/health")
            assert listed.status_code == 503
            assert health.status_code == 503
            # Several HEALTHCHECK rounds (1 s apart, 3 failures to turn unhealthy) into the
            # outage the container is still healthy: it checks liveness, not the database.
            await asyncio.sleep(5)
            assert await asyncio.to_thread(container.health) == "healthy"

        elapsed, exit_code = await asyncio.to_thread(container.stop)
        assert elapsed < STOP_SECONDS, f"docker stop took {elapsed:.1f} s"
        assert exit_code == 0, container.logs()
    finally:
        await proxy.restore()
        for schema in schemas.values():
            await drop_schema(postgres_url, schema)


def test_in_production_without_secrets_it_exits_1_with_one_line_saying_why(
    daemon: Daemon, image: str
) -> None:
    result = daemon.run(
        "run", "--rm", "--network=host", "--env=APP_ENV=production", image, check=False
    )

    assert result.returncode == 1
    (line,) = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert line.startswith("Invalid configuration")
    assert "DATABASE_URL" in line
    assert "SECRET_KEY" in line
