"""The stack and its services starting against a database that is not there, or not as
configured: fail fast on settings, keep waiting on outages, and stop when told to."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, Stack, session_processes, start_stack
from tests.support.http_server import free_port
from tests.support.pg_cluster import DATABASE, PASSWORD, HostedPostgres
from tests.support.tokens import SECRET_KEY

# Start-up of three Python processes on a busy machine, then the failure itself.
FAILS_WITHIN = 60.0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _unreachable_url() -> str:
    return f"postgresql://todo:pw@127.0.0.1:{_closed_port()}/todo?sslmode=disable"


def _wait_for(path: Path, text: str, process: subprocess.Popen[bytes], within: float) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        log = path.read_text(errors="replace") if path.exists() else ""
        if text in log:
            return log
        if process.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(f"{text!r} never appeared:\n{path.read_text(errors='replace')[-3000:]}")


def _exit_code_and_log(stack: Stack) -> tuple[int, str]:
    """How a stack that should give up by itself ended, once it has, and its log."""
    try:
        code = stack.process.wait(timeout=FAILS_WITHIN)
    finally:
        stack.stop()
    return code, stack.log()


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"password": "not-the-password"}, "password"),
        ({"database": "nosuchdb"}, "database name"),
        ({"sslmode": "verify-full", "sslrootcert": "/nonexistent/root.crt"}, "sslrootcert"),
        ({"sslmode": "disable"}, "sslmode"),
    ],
    ids=["password", "database", "root-certificate", "tls-mismatch"],
)
def test_a_database_setting_no_retry_can_fix_ends_the_stack_with_one_line(
    hosted_postgres: HostedPostgres, tmp_path: Path, change: dict[str, str], cause: str
) -> None:
    query: dict[str, Any] = {"sslmode": "require", **change}
    password = query.pop("password", None)
    url = hosted_postgres.url(
        password=password or PASSWORD, database=query.pop("database", DATABASE), **query
    )
    stack = start_stack(tmp_path, DATABASE_URL=url)
    code, log = _exit_code_and_log(stack)

    assert code == 1, log[-3000:]
    lines = [line for line in log.splitlines() if "Database configuration error" in line]
    assert lines, log[-3000:]
    assert all(cause in line for line in lines), lines
    assert "retrying" not in log
    assert "Traceback" not in log
    if password:
        assert password not in log
    assert session_processes(stack.process.pid) == {}, "a process outlived supervisord"


def test_an_unusable_sqlite_directory_ends_the_stack_naming_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    stack = start_stack(tmp_path, DATA_DIR=str(blocker / "data"), SECRET_KEY=SECRET_KEY)
    code, log = _exit_code_and_log(stack)

    assert code == 1, log[-3000:]
    assert "DATA_DIR" in log
    assert "Traceback" not in log


@dataclass
class WaitingRun:
    """A stack that waited for an unreachable database, then was sent SIGTERM."""

    stack: Stack
    # The log once the first retry was reported.
    log: str
    code: int
    # Seconds from the SIGTERM to supervisord's exit.
    took: float


@pytest.fixture(scope="module")
def waiting_run(tmp_path_factory: pytest.TempPathFactory) -> WaitingRun:
    """One stack retrying an outage and then stopped: the tests below only look at it, so
    they share one start-up."""
    stack = start_stack(tmp_path_factory.mktemp("waiting"), DATABASE_URL=_unreachable_url())
    try:
        log = _wait_for(stack.log_path, "retrying", stack.process, FAILS_WITHIN)
        started = time.monotonic()
        stack.process.send_signal(signal.SIGTERM)
        code = stack.process.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        stack.stop()
    return WaitingRun(stack, log, code, took)


def test_an_outage_is_retried_with_its_real_cause(waiting_run: WaitingRun) -> None:
    retries = [line for line in waiting_run.log.splitlines() if "retrying" in line]
    assert all("ConnectionRefusedError" in line for line in retries), retries
    assert "InterfaceError" not in waiting_run.log


def test_sigterm_while_waiting_for_the_database_stops_the_stack_within_5_s(
    waiting_run: WaitingRun,
) -> None:
    stack = waiting_run.stack
    assert waiting_run.took < 5, f"took {waiting_run.took:.1f} s:\n{stack.log()[-3000:]}"
    assert waiting_run.code == 0
    assert "SIGKILL" not in stack.log()
    assert session_processes(stack.process.pid) == {}, "a process outlived supervisord"


def test_sigterm_while_waiting_for_the_database_stops_a_service_within_2_s(
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "service.log"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATA_DIR")},
        "DATABASE_URL": _unreachable_url(),
        "SECRET_KEY": SECRET_KEY,
        "DATA_DIR": str(tmp_path),
    }
    command = [sys.executable, "-m", "uvicorn", "task_service.main:app", "--port", str(free_port())]
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 (fixed command)
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_for(log_path, "retrying", process, FAILS_WITHIN)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()

    assert took < 2, f"took {took:.1f} s"
