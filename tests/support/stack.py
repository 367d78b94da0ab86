"""Start and stop the whole stack (`python app.py`) on free loopback ports.

One start-up for the end-to-end tests and the benchmark: both run the launcher as a user
would, in a session of its own, with the developer's shell variables kept out.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from supervisor.xmlrpc import SupervisorTransport

from tests.support.databases import drop_schema
from tests.support.http_server import free_port

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 60.0
# The programs supervisord runs (supervisord.conf), by the short names reports use.
PROGRAMS = {"gateway": "gateway", "auth": "auth", "tasks": "tasks"}
# Variables of the developer's shell that must not reach the stack.
_SCRUBBED = (
    "DATABASE_URL",
    "SECRET_KEY",
    "BETTER_AUTH_SECRET",
    "APP_ENV",
    "DATA_DIR",
    "PORT",
    "SUPERVISOR_RUN_DIR",
    "AUTH_SERVICE_URL",
    "TASK_SERVICE_URL",
)


class StackError(AssertionError):
    """The stack exited or did not become healthy (an assertion: a test using it fails)."""


@dataclass
class Stack:
    """A running `python app.py` (supervisord and its programs)."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)
    # Seconds from the launch to the first healthy /health, once seen.
    healthy_after: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    @property
    def task_service_url(self) -> str:
        return f"http://127.0.0.1:{self.env['TASK_SERVICE_PORT']}"

    def client(self) -> httpx2.Client:
        return httpx2.Client(base_url=self.base_url, timeout=10)

    def async_client(self, **kwargs: Any) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(base_url=self.base_url, timeout=10, **kwargs)

    def supervisorctl(self, *args: str) -> str:
        command = [sys.executable, "-m", "supervisor.supervisorctl", "-c", "supervisord.conf"]
        result = subprocess.run(  # noqa: S603 (fixed command)
            [*command, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    def start_program(self, program: str) -> None:
        """Have supervisord start a stopped program, and return at once: `supervisorctl
        start` answers only once the program has stayed up for its startsecs (10 s)."""
        socket_path = Path(self.env["SUPERVISOR_RUN_DIR"]) / "supervisor.sock"
        transport = SupervisorTransport(None, None, f"unix://{socket_path}")
        with xmlrpc.client.ServerProxy("http://localhost", transport=transport) as rpc:
            rpc.supervisor.startProcess(program, False)

    def pid(self, program: str) -> int:
        return int(self.supervisorctl("pid", program))

    def processes(self) -> dict[str, int]:
        """The pid of supervisord and of every program it runs, by short name."""
        found = {"supervisord": self.process.pid}
        lines = self.supervisorctl("pid", *PROGRAMS.values()).splitlines()
        for name, line in zip(PROGRAMS, lines, strict=False):
            if line.strip().isdigit() and int(line) > 0:
                found[name] = int(line)
        return found

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
                    raise StackError(f"the stack exited early:\n{self.log()[-4000:]}")
                try:
                    if (await client.get("/health")).status_code == 200:
                        if self.healthy_after is None:
                            self.healthy_after = time.monotonic() - self.started_at
                        return
                except httpx2.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        raise StackError(f"the stack was not healthy within {within}s:\n{self.log()[-4000:]}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then SIGKILL to the whole session if it does not end in time (and raise)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                raise
        return self.process.returncode

    async def drop_schemas(self, database_url: str) -> None:
        """Drop the schemas a stack on PostgreSQL created."""
        for name in ("AUTH_DB_SCHEMA", "TASK_DB_SCHEMA"):
            if name in self.env:
                await drop_schema(database_url, self.env[name])


def launch(run_dir: Path, *, launcher: Sequence[str] = (), **settings: str) -> Stack:
    """Launch `python app.py` (behind `launcher`, if given) as a new session on free
    loopback ports, with `settings` as its environment's overrides; returns at once."""
    env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED}
    env.update(
        HOST="127.0.0.1",
        PORT=str(free_port()),
        AUTH_SERVICE_PORT=str(free_port()),
        TASK_SERVICE_PORT=str(free_port()),
        DATA_DIR=str(run_dir / "data"),
        SUPERVISOR_RUN_DIR=str(run_dir),
    )
    env.update(settings)
    log_path = run_dir / "stack.log"
    started = time.monotonic()
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
    return Stack(process, env, log_path, started_at=started)
