"""deploy/compose.yaml: valid for Debian's docker-compose, and its three services, started
from the built image, serve through the gateway.

The file's private network (10.213.0.0/24) and its PostgreSQL container are not for this
machine (no bridge, no registry to pull postgres from), so its services run here on the
host's network against the suite's PostgreSQL, with everything else as the file has it:
commands, variables, health checks.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from tests.docker.conftest import ROOT
from tests.docker.daemon import Daemon
from tests.support.databases import drop_schema, unique_schema
from tests.support.http_server import free_port

COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
SCHEMA_VARIABLES = {"auth": "AUTH_DB_SCHEMA", "tasks": "TASK_DB_SCHEMA"}


def _compose(daemon: Daemon, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = shutil.which("docker-compose")
    assert command is not None, "installed with the daemon"
    return subprocess.run(  # noqa: S603 (fixed command, our own arguments)
        [command, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**daemon.env, **env},
    )


def test_compose_config_accepts_the_file_and_insists_on_a_secret_key(daemon: Daemon) -> None:
    valid = _compose(
        daemon, "-f", str(COMPOSE_FILE), "config", "--quiet", env={"SECRET_KEY": "k" * 48}
    )
    missing = _compose(daemon, "-f", str(COMPOSE_FILE), "config", "--quiet", env={})

    assert valid.returncode == 0, valid.stderr
    assert missing.returncode != 0
    assert "set SECRET_KEY" in missing.stderr


def _on_host_network(
    compose: dict[str, Any],
    *,
    image: str,
    ports: dict[str, int],
    database_url: str,
    schemas: dict[str, str],
    secret_key: str,
) -> dict[str, Any]:
    """The file's services, from the built image, on the host's network and free ports."""
    services = {}
    for name, original in compose["services"].items():
        if name == "postgres":
            continue
        service = copy.deepcopy(original)
        for key in ("build", "networks", "ports", "depends_on", "restart"):
            service.pop(key, None)
        service.update(image=image, network_mode="host")
        command: list[str] = service["command"]
        port_index = command.index("--port") + 1
        file_port, command[port_index] = command[port_index], str(ports[name])
        command[command.index("--host") + 1] = "127.0.0.1"
        check: list[str] = service["healthcheck"]["test"]
        service["healthcheck"]["test"] = [
            part.replace(f":{file_port}/", f":{ports[name]}/") for part in check
        ]
        env: dict[str, str] = service["environment"]
        if name == "gateway":
            env.update(
                PORT=str(ports[name]),  # what `app.py --healthcheck` calls
                AUTH_SERVICE_URL=f"http://127.0.0.1:{ports['auth']}",
                TASK_SERVICE_URL=f"http://127.0.0.1:{ports['tasks']}",
            )
            service["depends_on"] = ["auth", "tasks"]
        else:
            env.update(
                DATABASE_URL=database_url,
                SECRET_KEY=secret_key,
                FORWARDED_ALLOW_IPS="127.0.0.1",
                **{SCHEMA_VARIABLES[name]: schemas[name]},
            )
        services[name] = service
    assert set(services) == {"auth", "tasks", "gateway"}
    return {"services": services}


def _project_health(daemon: Daemon, project: str) -> dict[str, str]:
    listing = daemon.run(
        "ps",
        "--all",
        f"--filter=label=com.docker.compose.project={project}",
        '--format={{.Label "com.docker.compose.service"}} {{.Status}}',
    ).stdout
    return dict(line.split(" ", 1) for line in listing.splitlines())


def _logs_of_unhealthy(daemon: Daemon, project: str, health: dict[str, str]) -> str:
    """The last lines each container not (yet) healthy wrote: why it is not."""
    listing = daemon.run(
        "ps",
        "--all",
        f"--filter=label=com.docker.compose.project={project}",
        '--format={{.ID}} {{.Label "com.docker.compose.service"}}',
    ).stdout
    logs = []
    for line in listing.splitlines():
        container, service = line.split(" ", 1)
        if "(healthy)" not in health.get(service, ""):
            written = daemon.run("logs", "--tail=40", container, check=False)
            logs.append(f"--- {service} ---\n{written.stdout}{written.stderr}")
    return "\n".join(logs)


def _serve_and_check(daemon: Daemon, project: str, gateway: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        health = _project_health(daemon, project)
        if len(health) == 3 and all("(healthy)" in status for status in health.values()):
            break
        time.sleep(1)
    else:
        logs = _logs_of_unhealthy(daemon, project, health)
        raise AssertionError(f"not every service turned healthy: {health}\n{logs}")
    with httpx2.Client(base_url=gateway, timeout=10) as client:
        assert client.get("/health").status_code == 200
        registered = client.post(
            "/auth/register", json={"email": "compose@example.com", "password": "correct horse"}
        )
        assert registered.status_code == 201, registered.text
        body = registered.json()
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        tasks = f"/api/{body['user']['id']}/tasks"
        created = client.post(tasks, json={"title": "composed"}, headers=headers)
        assert created.status_code == 201, created.text
        assert [task["title"] for task in client.get(tasks, headers=headers).json()] == ["composed"]


@pytest.mark.postgres
async def test_compose_services_start_from_the_image_and_serve_through_the_gateway(
    daemon: Daemon, image: str, postgres_url: str, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in ("auth", "tasks", "gateway")}
    schemas = {name: unique_schema(name) for name in SCHEMA_VARIABLES}
    derived = _on_host_network(
        yaml.safe_load(COMPOSE_FILE.read_text()),
        image=image,
        ports=ports,
        database_url=postgres_url,
        schemas=schemas,
        secret_key=secrets.token_urlsafe(48),
    )
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(derived))
    project = f"todo-test-{uuid.uuid4().hex[:12]}"
    files = ("--project-name", project, "--file", str(path))
    try:
        up = await asyncio.to_thread(_compose, daemon, *files, "up", "--detach", env={})
        assert up.returncode == 0, up.stderr
        await asyncio.to_thread(
            _serve_and_check, daemon, project, f"http://127.0.0.1:{ports['gateway']}"
        )
        started = time.monotonic()
        down = await asyncio.to_thread(_compose, daemon, *files, "down", "--timeout=20", env={})
        elapsed = time.monotonic() - started
        assert down.returncode == 0, down.stderr
        assert elapsed < 20, f"docker-compose down took {elapsed:.1f} s"
    finally:
        await asyncio.to_thread(_compose, daemon, *files, "down", "--timeout=5", env={})
        for schema in schemas.values():
            await drop_schema(postgres_url, schema)
