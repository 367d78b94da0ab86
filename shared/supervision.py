"""The stack's processes and supervisord: how a program stops everything with a failure.

Used by a service that finds a configuration error no restart can fix, and by the FATAL
event listener supervisord runs (`python -m shared.supervision`, supervisord.conf). A leaf
module of the standard library only: the listener is a process of its own that stays up
as long as the stack, and imports nothing else.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import BinaryIO, TextIO

# Left in SUPERVISOR_RUN_DIR when the stack is stopped on a failure; app.py --supervisord
# turns it into exit status 1.
FATAL_MARKER = "fatal"


def running_under_supervisord() -> bool:
    """True in a program supervisord started (it sets SUPERVISOR_ENABLED for its children)."""
    return bool(os.environ.get("SUPERVISOR_ENABLED")) and bool(os.environ.get("SUPERVISOR_RUN_DIR"))


def stop_the_stack() -> None:
    """Have supervisord stop every program gracefully and the stack exit with status 1.

    supervisord is the parent of every program it runs (and of its event listeners).
    """
    with open(os.path.join(os.environ["SUPERVISOR_RUN_DIR"], FATAL_MARKER), "ab"):
        pass
    os.kill(os.getppid(), signal.SIGTERM)


def exit_on_fatal(events: BinaryIO, answers: BinaryIO, log: TextIO) -> None:
    """Answer supervisord's events until it closes `events`; on PROCESS_STATE_FATAL, stop
    supervisord (which stops every program gracefully) and have it exit with a failure.

    supervisord's event-listener protocol, as `supervisor.childutils` speaks it: READY, then
    one line of `name:value` headers whose `len` counts the payload's bytes, the payload,
    and RESULT with OK. childutils itself is not used: importing it costs about 15 MiB
    (supervisor.compat loads xmlrpc, http.client and email), which this process would hold
    for as long as the stack runs, against 1 MiB for these lines (bench/history.md).
    """
    while True:
        answers.write(b"READY\n")
        answers.flush()
        line = events.readline()
        if not line:
            return
        headers = dict(token.split(":", 1) for token in line.decode().split())
        payload = events.read(int(headers["len"])).decode(errors="replace")
        if headers.get("eventname") == "PROCESS_STATE_FATAL":
            print(f"exit_on_fatal: a program cannot be kept running ({payload})", file=log)
            log.flush()
            stop_the_stack()
        answers.write(b"RESULT 2\nOK")
        answers.flush()


if __name__ == "__main__":
    exit_on_fatal(sys.stdin.buffer, sys.stdout.buffer, sys.stderr)
