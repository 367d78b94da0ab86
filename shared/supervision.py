"""The stack's processes and supervisord: how a program stops everything with a failure.

Used by the FATAL event listener in app.py and by a service that finds a configuration
error no restart can fix. A leaf module: app.py imports it before anything heavy.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

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
    (Path(os.environ["SUPERVISOR_RUN_DIR"]) / FATAL_MARKER).touch()
    os.kill(os.getppid(), signal.SIGTERM)
