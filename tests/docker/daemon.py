"""A Docker daemon of the test run's own, and the tools it needs, installed when missing.

The daemon has its own socket, data root, exec root and pid file (in a tmpfs of its own),
no bridge, no iptables rules and no IP forwarding, so it touches nothing of the machine's
(nor of another run's daemon), and containers share the host's network. No registry is
reachable: images are built or imported locally.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Debian's packages: the engine (dockerd, its CLI, containerd, runc), the tool that makes the
# stand-in base image, and the compose CLI of the same generation as the engine.
PACKAGES = ("docker.io", "debootstrap", "docker-compose")
TOOLS = ("dockerd", "debootstrap", "docker-compose")
DAEMON_START_SECONDS = 60
DAEMON_STOP_SECONDS = 30
# The stand-in base, the image and its build layers fit with room to spare.
TMPFS_SIZE = "6g"


class DockerUnavailableError(Exception):
    """Docker cannot run here (and could not be installed)."""


def install_missing_tools() -> None:
    """apt-get the packages whose tools are missing; raise DockerUnavailableError if that fails."""
    if all(shutil.which(tool) for tool in TOOLS):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DockerUnavailableError(
            f"{', '.join(TOOLS)} are needed and apt-get cannot run as root here"
        )
    # The package lists may be missing or stale on a fresh machine: refresh them once.
    for refresh in (False, True):
        if refresh:
            _apt_get("update")
        result = _apt_get("install", "-y", *PACKAGES)
        if result.returncode == 0 and all(shutil.which(tool) for tool in TOOLS):
            return
    raise DockerUnavailableError(
        f"apt-get install {' '.join(PACKAGES)} failed:\n{result.stderr[-2000:]}"
    )


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (fixed command)
        ["apt-get", "-q", *args],  # noqa: S607 (the system's apt-get)
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def _client_binary(dockerd: str) -> str:
    # The CLI packaged with the daemon first: another one on PATH may be of another
    # generation (and default to a builder this daemon lacks).
    for candidate in (Path(dockerd).parent.parent / "bin" / "docker", Path("/usr/bin/docker")):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    client = shutil.which("docker")
    if client is None:
        raise DockerUnavailableError("no docker CLI")
    return client


@dataclass
class Daemon:
    """A running dockerd and the environment that points clients at it."""

    client: str
    env: dict[str, str]
    log: Path

    def run(
        self, *args: str, check: bool = True, timeout: float = 120, input_path: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`docker ARGS...` against this daemon."""
        with contextlib.ExitStack() as stack:
            stdin = stack.enter_context(input_path.open("rb")) if input_path else None
            result = subprocess.run(  # noqa: S603 (fixed client, our own arguments)
                [self.client, *args],
                stdin=stdin,
                capture_output=True,
                check=False,
                timeout=timeout,
                env=self.env,
            )
        completed = subprocess.CompletedProcess(
            result.args,
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )
        if check and completed.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args[:3])} exited {completed.returncode}:\n"
                f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
            )
        return completed

    def remove_containers(self) -> None:
        ids = self.run("ps", "-aq").stdout.split()
        if ids:
            self.run("rm", "-f", "-v", *ids, timeout=60)


@contextlib.contextmanager
def running_daemon() -> Iterator[Daemon]:
    """Start a dockerd of our own; on exit stop it and remove everything it made."""
    install_missing_tools()
    dockerd = shutil.which("dockerd")
    assert dockerd is not None
    # Short paths: containerd's socket lives under the exec root, and socket paths are short.
    root = Path(tempfile.mkdtemp(prefix="todo-docker-", dir="/tmp"))
    # Images and containers in memory: builds write faster, and removing them all at the end
    # is one unmount instead of deleting tens of thousands of files.
    subprocess.run(  # noqa: S603 (fixed command, our own path)
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "todo-docker", str(root)],  # noqa: S607
        check=True,
        capture_output=True,
        timeout=30,
    )
    config = root / "daemon.json"
    # Not the machine's /etc/docker/daemon.json; and the daemon's identity key here rather
    # than in /etc/docker/key.json.
    config.write_text(json.dumps({"deprecated-key-path": str(root / "key.json")}))
    socket = root / "docker.sock"
    log = root / "dockerd.log"
    with log.open("ab") as log_file:
        process = subprocess.Popen(  # noqa: S603 (fixed command)
            [
                dockerd,
                f"--host=unix://{socket}",
                f"--data-root={root / 'data'}",
                f"--exec-root={root / 'exec'}",
                f"--pidfile={root / 'docker.pid'}",
                f"--config-file={config}",
                "--bridge=none",
                "--iptables=false",
                "--ip-forward=false",  # leave the host's sysctl as it is
                "--log-level=warn",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DOCKER_", "COMPOSE_"))
    }
    env.update(DOCKER_HOST=f"unix://{socket}", DOCKER_BUILDKIT="0")
    daemon = Daemon(_client_binary(dockerd), env, log)
    try:
        _wait_until_up(daemon, process)
        yield daemon
    finally:
        with contextlib.suppress(Exception):
            daemon.remove_containers()
        _stop(process)
        _unmount_below(root)
        _unmount(root)
        root.rmdir()


def _wait_until_up(daemon: Daemon, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DAEMON_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DockerUnavailableError(
                f"dockerd exited {process.returncode}:\n{daemon.log.read_text()}"
            )
        if daemon.run("version", check=False, timeout=10).returncode == 0:
            return
        time.sleep(0.2)
    raise DockerUnavailableError(
        f"dockerd did not answer in {DAEMON_START_SECONDS} s:\n{daemon.log.read_text()}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # dockerd stops its containerd and unmounts its layers on SIGTERM.
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=DAEMON_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _unmount_below(root: Path) -> None:
    """Unmount what the daemon left mounted under its directories (its network namespace
    stays bind-mounted after it stops), deepest first."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount_point in sorted(
        (m for m in mounts if m.startswith(f"{root}/")), key=len, reverse=True
    ):
        _unmount(Path(mount_point))


def _unmount(path: Path) -> None:
    subprocess.run(  # noqa: S603 (fixed command, our own path)
        ["umount", "--lazy", str(path)],  # noqa: S607 (the system's umount)
        capture_output=True,
        check=False,
        timeout=30,
    )
