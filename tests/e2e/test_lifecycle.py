"""Starting and stopping the stack as a platform would."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.e2e.conftest import ROOT, Stack, session_processes, start_stack

# No retry (START_RETRIES=0) instead of production's five: the same path to FATAL, without
# waiting out the back-off of the other four.
FATAL_WITHIN = 60
# In a container supervisord is PID 1, which ignores every signal it has no handler for.
AS_PID_1 = ("unshare", "--pid", "--fork")


def _can_run_as_pid_1() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*AS_PID_1, "true"], capture_output=True, check=False)  # noqa: S603
    return probe.returncode == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class SqliteRun:
    """What one default stack (embedded SQLite) showed while it ran, and how it stopped."""

    stack: Stack
    health: dict[str, Any]
    pids: list[int]
    running: dict[int, str]
    healthcheck: int
    supervisord_pid: int
    code: int


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory: pytest.TempPathFactory) -> SqliteRun:
    """A default stack, observed while healthy and then stopped with SIGTERM: the tests below
    only look at it, so they share one start-up."""
    stack = start_stack(tmp_path_factory.mktemp("sqlite"))
    try:
        stack.wait_healthy()
        health = httpx2.get(f"{stack.base_url}/health", timeout=5).json()
        pids = [stack.pid(name) for name in ("gateway", "auth", "tasks")]
        running = session_processes(stack.process.pid)
        healthcheck = _healthcheck(stack.env)
        # app.py execs supervisord: the pid the platform signals is supervisord's.
        supervisord_pid = int(stack.supervisorctl("pid"))
    finally:
        code = stack.stop()
    return SqliteRun(stack, health, pids, running, healthcheck, supervisord_pid, code)


def test_stack_starts_on_embedded_sqlite_and_stops_cleanly_on_sigterm(
    sqlite_run: SqliteRun,
) -> None:
    stack = sqlite_run.stack
    data = Path(stack.env["DATA_DIR"])

    assert sqlite_run.health["services"]["tasks"]["storage"] == "sqlite"
    assert set(sqlite_run.pids) | {stack.process.pid} <= set(sqlite_run.running)
    assert sqlite_run.code == 0
    assert session_processes(stack.process.pid) == {}, "a process outlived supervisord"
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(f"{stack.base_url}/health", timeout=2)
    assert (data / "auth.db").exists()
    assert (data / "tasks.db").exists()
    assert "data lives in local SQLite files" in stack.log()
    for program in ("gateway", "auth", "tasks"):
        assert stack.log().count(f"spawned: '{program}' with pid") == 1


@pytest.mark.parametrize("launcher", [(), AS_PID_1], ids=["process", "pid-1"])
def test_a_program_that_cannot_start_ends_the_stack_with_a_failure(
    tmp_path: Path, launcher: tuple[str, ...]
) -> None:
    if launcher and not _can_run_as_pid_1():
        pytest.skip("running a process as PID 1 needs `unshare --pid` (root)")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        stack = start_stack(tmp_path, launcher=launcher, AUTH_SERVICE_PORT=port, START_RETRIES="0")
        try:
            code = stack.process.wait(timeout=FATAL_WITHIN)
        finally:
            stack.stop()

    log = stack.log()
    assert "gave up: auth entered FATAL state" in log
    assert code == 1, log[-4000:]
    for program in ("gateway", "tasks"):
        # Each ends on the SIGTERM it was sent, never on SIGKILL: uvicorn by that signal once
        # it has shut down, or with status 0 if it was still starting (waiting for its
        # database, which it stops doing on SIGTERM).
        stopped = re.search(rf"stopped: {program} \((terminated by SIGTERM|exit status 0)\)", log)
        assert stopped, program
    assert session_processes(stack.process.pid) == {}, "a process outlived supervisord"


def test_bad_configuration_stops_the_launch_with_one_line(tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    stack = start_stack(
        tmp_path,
        APP_ENV="production",
        SECRET_KEY="short",
        SUPERVISOR_RUN_DIR="",  # so app.py would make one, in TMPDIR
        TMPDIR=str(temporary),
    )

    code = stack.process.wait(timeout=30)

    assert code != 0
    lines = stack.log().strip().splitlines()
    (line,) = [line for line in lines if "DATABASE_URL is not set" in line]
    assert "(auth service, task service)" in line
    assert "SECRET_KEY must be set to at least 32 bytes" in line
    assert not any("Traceback" in line for line in lines)
    assert not _alive(stack.process.pid)
    assert list(temporary.iterdir()) == [], "a run directory was made for nothing"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"AUTH_SERVICE_PORT": "auth"}, "AUTH_SERVICE_PORT must be a port number (1-65535)"),
        ({"TASK_SERVICE_PORT": "70000"}, "TASK_SERVICE_PORT must be a port number (1-65535)"),
        ({"PORT": "0"}, "PORT must be a port number (1-65535)"),
        ({"PORT": "8123", "TASK_SERVICE_PORT": "8123"}, "TASK_SERVICE_PORT and PORT are both"),
        ({"START_RETRIES": "-1"}, "START_RETRIES must be a whole number, not '-1'"),
    ],
    ids=["not-a-number", "too-large", "zero", "shared", "start-retries"],
)
def test_a_bad_launcher_setting_stops_the_launch_with_one_line(
    tmp_path: Path, overrides: dict[str, str], expected: str
) -> None:
    stack = start_stack(tmp_path, **overrides)
    try:
        code = stack.process.wait(timeout=30)
    finally:
        stack.stop()

    assert code != 0
    (line,) = stack.log().strip().splitlines()
    assert line.startswith(f"Invalid configuration: {expected}")


def test_the_container_healthcheck_follows_the_gateway(sqlite_run: SqliteRun) -> None:
    assert sqlite_run.healthcheck == 0
    assert _healthcheck(sqlite_run.stack.env) == 1


def _healthcheck(env: dict[str, str]) -> int:
    return subprocess.run(
        [sys.executable, "app.py", "--healthcheck"], cwd=ROOT, env=env, check=False
    ).returncode


def test_sigterm_is_forwarded_to_supervisord_itself(sqlite_run: SqliteRun) -> None:
    assert sqlite_run.supervisord_pid == sqlite_run.stack.process.pid
    assert sqlite_run.stack.process.returncode == 0
