"""The real stack, started with `python app.py` on free ports, driven only over HTTP."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.databases import unique_schema
from tests.support.stack import ROOT, Stack, launch
from tests.support.tokens import BETTER_AUTH_SECRET, SECRET_KEY

__all__ = [
    "ROOT",
    "Stack",
    "drop_stack_schemas",
    "postgres_stack",
    "session_processes",
    "start_stack",
    "stop_promptly",
]


def start_stack(tmp_path: Path, *, launcher: Sequence[str] = (), **overrides: str) -> Stack:
    """Launch `python app.py` (behind `launcher`, if given) on free loopback ports, with the
    tests' secrets."""
    settings = {
        "SECRET_KEY": SECRET_KEY,
        "BETTER_AUTH_SECRET": BETTER_AUTH_SECRET,
        "LOG_LEVEL": "INFO",
        **overrides,
    }
    stack = launch(tmp_path, launcher=launcher, **settings)
    _wake_supervisord(stack)
    return stack


def _wake_supervisord(stack: Stack, within: float = 10) -> None:
    """Connect once to supervisord's control socket, as soon as it listens.

    supervisord spawns its programs when its main loop first wakes up: a second after it
    started, unless a client connects sooner. No test here is about that second.
    """
    deadline = time.monotonic() + within
    while stack.process.poll() is None and time.monotonic() < deadline:
        if _poke_supervisord(stack):
            return
        time.sleep(0.01)


def _poke_supervisord(stack: Stack) -> bool:
    """Connect to supervisord's control socket and hang up, which wakes its main loop;
    False when it is not listening."""
    run_dir = stack.env.get("SUPERVISOR_RUN_DIR")
    if not run_dir:
        return False
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(Path(run_dir) / "supervisor.sock"))
        except OSError:
            return False
    return True


def stop_promptly(stack: Stack) -> int:
    """Stop a stack the tests are done with (Stack.stop), waking supervisord meanwhile.

    supervisord stops its programs one after another, and notices each has ended only at
    its next wake-up, up to a second later. The tests about stopping use Stack.stop alone,
    as a platform would.
    """
    stopped = threading.Event()

    def poke() -> None:
        while not stopped.wait(0.02):
            _poke_supervisord(stack)

    poker = threading.Thread(target=poke, daemon=True)
    poker.start()
    try:
        return stack.stop()
    finally:
        stopped.set()
        poker.join()


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


@contextmanager
def postgres_stack(postgres_url: str, tmp_path: Path, **overrides: str) -> Iterator[Stack]:
    """A healthy stack on PostgreSQL, in schemas of its own that are dropped after it stops.

    `overrides` may name another DATABASE_URL to the same server (one with a password, say).
    """
    settings = {
        "DATABASE_URL": postgres_url,
        "AUTH_DB_SCHEMA": unique_schema("auth"),
        "TASK_DB_SCHEMA": unique_schema("tasks"),
        **overrides,
    }
    running = start_stack(tmp_path, **settings)
    try:
        running.wait_healthy()
        yield running
    finally:
        stop_promptly(running)
        drop_stack_schemas(postgres_url, running)


@pytest.fixture(scope="session")
def stack(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One default stack on PostgreSQL, in schemas of its own, for the modules that do not
    start their own: their tests make users and request ids of their own, and a program one
    kills is back before it ends."""
    with postgres_stack(postgres_url, tmp_path_factory.mktemp("stack")) as running:
        yield running


async def drop_stack_schemas_async(url: str, stack: Stack) -> None:
    """Drop the schemas a stack on PostgreSQL created."""
    await stack.drop_schemas(url)


def drop_stack_schemas(url: str, stack: Stack) -> None:
    asyncio.run(drop_stack_schemas_async(url, stack))
