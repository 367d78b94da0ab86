"""supervisord's FATAL event listener (`python -m shared.supervision`), spoken to as
supervisord would: READY, a header line, a payload of `len` bytes, RESULT 2 OK."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from tests.support.imports import ROOT, loaded_beyond_start_up

LISTENER = (sys.executable, "-m", "shared.supervision")
# Stands in for supervisord as the listener's parent: it notes the SIGTERM the listener
# sends it, waits for the listener to end, and exits 0 only if that SIGTERM came.
PARENT = """
import signal, subprocess, sys
received = []
signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
status = subprocess.call([sys.executable, "-m", "shared.supervision"])
sys.exit(0 if received == [signal.SIGTERM] and status == 0 else 3)
"""


def _event(name: str, payload: bytes) -> bytes:
    header = (
        f"ver:3.0 server:supervisor serial:7 pool:exit_on_fatal poolserial:7 eventname:{name} "
        f"len:{len(payload)}\n"
    )
    return header.encode() + payload


def _exchange(events: IO[bytes], answers: IO[bytes], event: bytes) -> bytes:
    """Send one event once the listener is ready; its answer."""
    assert answers.readline() == b"READY\n"
    events.write(event)
    events.flush()
    return answers.read(len(b"RESULT 2\nOK"))


def _start(command: tuple[str, ...], run_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 (fixed command)
        command,
        cwd=ROOT,
        env={**os.environ, "SUPERVISOR_RUN_DIR": str(run_dir)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_other_events_are_acknowledged_and_change_nothing(tmp_path: Path) -> None:
    listener = _start(LISTENER, tmp_path)
    assert listener.stdin is not None
    assert listener.stdout is not None
    # `len` counts bytes: a payload with a multi-byte character must be read whole, or the
    # rest would be taken for the next event's header.
    payload = "processname:tâches groupname:tâches from_state:STARTING".encode()

    for _ in range(2):
        answer = _exchange(listener.stdin, listener.stdout, _event("PROCESS_STATE_EXITED", payload))
        assert answer == b"RESULT 2\nOK"
    assert listener.stdout.readline() == b"READY\n"
    _, errors = listener.communicate(timeout=10)  # closes its stdin: supervisord has gone

    assert listener.returncode == 0
    assert errors == b""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fatal_first", [True, False], ids=["first-event", "after-another"])
def test_a_fatal_program_stops_supervisord_with_a_failure(
    tmp_path: Path, fatal_first: bool
) -> None:
    parent = _start((sys.executable, "-c", PARENT), tmp_path)
    assert parent.stdin is not None
    assert parent.stdout is not None
    if not fatal_first:
        other = _event("PROCESS_STATE_RUNNING", b"processname:gateway groupname:gateway")
        assert _exchange(parent.stdin, parent.stdout, other) == b"RESULT 2\nOK"
        assert not (tmp_path / "fatal").exists()
    fatal = b"processname:auth groupname:auth from_state:BACKOFF"

    answer = _exchange(parent.stdin, parent.stdout, _event("PROCESS_STATE_FATAL", fatal))
    _, errors = parent.communicate(timeout=10)

    assert answer == b"RESULT 2\nOK"
    assert parent.returncode == 0, "the listener's parent was not sent SIGTERM"
    assert (tmp_path / "fatal").exists()
    assert errors.decode().splitlines() == [
        f"exit_on_fatal: a program cannot be kept running ({fatal.decode()})"
    ]


def test_the_listener_imports_the_standard_library_only() -> None:
    # It lives as long as the stack: anything it imports stays in memory all that time.
    modules = loaded_beyond_start_up("-m", "shared.supervision")

    assert "shared" in modules
    outside = {name for name in modules if name.split(".")[0] not in sys.stdlib_module_names}
    assert outside == {"shared"}
