"""The image, built from the repository's Dockerfile on a daemon of the suite's own.

Skipped outside CI when Docker cannot run here (not root, no apt-get); under CI=true that is
a failure. The first run makes the stand-in base image (a few minutes, then cached).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest

from tests.docker.daemon import Daemon, DockerUnavailableError, running_daemon
from tests.docker.stand_in import ensure_stand_in, pip_build_args
from tests.support.http_server import free_port

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
IMAGE = "todo-backend:test"
START_SECONDS = 90
# The Dockerfile's HEALTHCHECK, polled faster: what it runs is what is under test, not when.
HEALTH_FLAGS = ("--health-interval=1s", "--health-start-period=60s")


@pytest.fixture(scope="session")
def daemon() -> Iterator[Daemon]:
    try:
        with running_daemon() as started:
            yield started
    except DockerUnavailableError as exc:
        if IN_CI:
            pytest.fail(f"CI=true but Docker cannot run: {exc}")
        pytest.skip(f"Docker cannot run here: {exc}")


@pytest.fixture(scope="session")
def image(daemon: Daemon) -> str:
    """The repository's Dockerfile built on the stand-in base."""
    base = ensure_stand_in(daemon)
    build_args = [f"--build-arg=BASE_IMAGE={base}"]
    build_args += [f"--build-arg={name}={value}" for name, value in pip_build_args().items()]
    daemon.run("build", "--network=host", *build_args, "--tag", IMAGE, str(ROOT), timeout=900)
    return IMAGE


@dataclass
class Container:
    """A container of the image on the host's network, with the ports it listens on."""

    daemon: Daemon
    id: str
    port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inspect(self) -> dict[str, object]:
        (state,) = json.loads(self.daemon.run("inspect", self.id).stdout)
        return state  # type: ignore[no-any-return]

    def state(self) -> dict[str, object]:
        return self.inspect()["State"]  # type: ignore[return-value]

    def health(self) -> str:
        return str(self.state()["Health"]["Status"])  # type: ignore[index]

    def logs(self) -> str:
        result = self.daemon.run("logs", self.id, check=False)
        return result.stdout + result.stderr

    def uids(self) -> dict[int, int]:
        """The real uid of every process in the container, by host pid."""
        lines = self.daemon.run("top", self.id, "-o", "pid").stdout.split()[1:]
        uids = {}
        for pid in map(int, lines):
            status = Path(f"/proc/{pid}/status").read_text()
            (uid_line,) = [line for line in status.splitlines() if line.startswith("Uid:")]
            uids[pid] = int(uid_line.split()[1])
        return uids

    def wait_until_serving(self, within: float = START_SECONDS) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.state()["Running"]:
                break
            try:
                if httpx2.get(f"{self.base_url}/health", timeout=5).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the container did not serve /health with 200:\n{self.logs()}")

    def wait_for_health(self, status: str, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.health() == status:
                return
            time.sleep(0.5)
        raise AssertionError(f"health is {self.health()}, not {status}:\n{self.logs()}")

    def stop(self) -> tuple[float, int]:
        """`docker stop` with room beyond its usual 10 s: how long it took, and the exit code."""
        started = time.monotonic()
        self.daemon.run("stop", "--time=30", self.id, timeout=60)
        elapsed = time.monotonic() - started
        return elapsed, int(self.state()["ExitCode"])  # type: ignore[call-overload]


def ports_env() -> dict[str, str]:
    """Free ports for the three programs: containers share the host's network."""
    return {
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "AUTH_SERVICE_PORT": str(free_port()),
        "TASK_SERVICE_PORT": str(free_port()),
    }


def start(daemon: Daemon, image: str, env: dict[str, str], *options: str) -> Container:
    """`docker run -d` the image with host networking and these variables."""
    env = {**ports_env(), **env}
    name = f"todo-test-{uuid.uuid4().hex[:12]}"
    flags = [f"--env={key}={value}" for key, value in env.items()]
    container_id = daemon.run(
        "run",
        "--detach",
        "--network=host",
        f"--name={name}",
        *HEALTH_FLAGS,
        *flags,
        *options,
        image,
    ).stdout.strip()
    return Container(daemon, container_id, int(env["PORT"]), env)
