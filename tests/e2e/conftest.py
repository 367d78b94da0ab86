"""The real stack, started with `python app.py` on free ports, driven only over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.databases import drop_schema, unique_schema
from tests.support.http_server import free_port
from tests.support.tokens import BETTER_AUTH_SECRET, SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 60.0
# Variables of the developer's shell that must not reach the stack under test.
_SCRUBBED = (
    "DATABASE_URL",
    "SECRET_KEY",
    "BETTER_AUTH_SECRET",
    "APP_ENV",
    "DATA_DIR",
    "PORT",
    "SUPERVISOR_RUN_DIR",
)


@dataclass
class Stack:
    """A running `python app.py` (supervisord and its programs)."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    def client(self) -> httpx2.Client:
        return httpx2.Client(base_url=self.base_url, timeout=10)

    def supervisorctl(self, *args: str) -> str:
        command = [sys.executable, "-m", "supervisor.supervisorctl", "-c", "supervisord.conf"]
        result = subprocess.run(  # noqa: S603 (fixed command)
            [*command, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    def pid(self, program: str) -> int:
        return int(self.supervisorctl("pid", program))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_once(self, ready: Callable[[str], bool], within: float = 10) -> str:
        """The log, once `ready(log)` holds (or the time is up): supervisord copies the
        programs' output to it a little later than they write it."""
        deadline = time.monotonic() + within
        while True:
            log = self.log()
            if ready(log) or time.monotonic() > deadline:
                return log
            time.sleep(0.05)

    def wait_healthy(self, within: float = STARTUP_TIMEOUT) -> None:
        asyncio.run(self.until_healthy(within))

    async def until_healthy(self, within: float = STARTUP_TIMEOUT) -> None:
        """Wait for /health to answer 200, without blocking the event loop (which may be
        running a test's proxy)."""
        deadline = time.monotonic() + within
        async with httpx2.AsyncClient(base_url=self.base_url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(f"the stack exited early:\n{self.log()[-4000:]}")
                try:
                    if (await client.get("/health")).status_code == 200:
                        return
                except httpx2.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        pytest.fail(f"the stack was not healthy within {within}s:\n{self.log()[-4000:]}")

    def async_client(self, **kwargs: Any) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(base_url=self.base_url, timeout=10, **kwargs)

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                raise
        return self.process.returncode


def start_stack(tmp_path: Path, *, launcher: Sequence[str] = (), **overrides: str) -> Stack:
    """Launch `python app.py` (behind `launcher`, if given) as a new session on free
    loopback ports."""
    env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED}
    env.update(
        HOST="127.0.0.1",
        PORT=str(free_port()),
        AUTH_SERVICE_PORT=str(free_port()),
        TASK_SERVICE_PORT=str(free_port()),
        SECRET_KEY=SECRET_KEY,
        BETTER_AUTH_SECRET=BETTER_AUTH_SECRET,
        DATA_DIR=str(tmp_path / "data"),
        SUPERVISOR_RUN_DIR=str(tmp_path),
        LOG_LEVEL="INFO",
    )
    env.update(overrides)
    log_path = tmp_path / "stack.log"
    # Append mode, as a container runtime's log would be: supervisord reopens /dev/stdout for
    # each log, and writes through a shared offset would overwrite one another.
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 (our own fixed command)
            [*launcher, sys.executable, "app.py"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Stack(process, env, log_path)


def session_processes(session_id: int) -> dict[int, str]:
    """The processes still in a session, by pid, with their command lines."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # it ended meanwhile
            continue
        # The name in parentheses may hold spaces: the fields that follow are state, ppid,
        # process group and session.
        if int(text[text.rindex(")") + 2 :].split()[3]) == session_id:
            found[int(stat.parent.name)] = command.strip()
    return found


@pytest.fixture(scope="module")
def stack(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack on PostgreSQL for a test module, in schemas of its own."""
    running = start_stack(
        tmp_path_factory.mktemp("stack"),
        DATABASE_URL=postgres_url,
        AUTH_DB_SCHEMA=unique_schema("auth"),
        TASK_DB_SCHEMA=unique_schema("tasks"),
    )
    try:
        running.wait_healthy()
        yield running
    finally:
        running.stop()
        drop_stack_schemas(postgres_url, running)


async def drop_stack_schemas_async(url: str, stack: Stack) -> None:
    """Drop the schemas a stack on PostgreSQL created."""
    for name in ("AUTH_DB_SCHEMA", "TASK_DB_SCHEMA"):
        if name in stack.env:
            await drop_schema(url, stack.env[name])


def drop_stack_schemas(url: str, stack: Stack) -> None:
    asyncio.run(drop_stack_schemas_async(url, stack))
