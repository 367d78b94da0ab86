"""The stack's processes and supervisord: how a program stops everything with a failure.

Used by a service that finds a configuration error no restart can fix, and inside
supervisord itself when a program goes FATAL (`stop_on_fatal`, supervisord.conf). A leaf
module of the standard library only: app.py imports it before anything heavy.
"""

from __future__ import annotations

import os
import signal
from typing import Any

# Left in SUPERVISOR_RUN_DIR when the stack is stopped on a failure; app.py --supervisord
# turns it into exit status 1.
FATAL_MARKER = "fatal"


def running_under_supervisord() -> bool:
    """True in a program supervisord started (it sets SUPERVISOR_ENABLED for its children)."""
    return bool(os.environ.get("SUPERVISOR_ENABLED")) and bool(os.environ.get("SUPERVISOR_RUN_DIR"))


def stop_the_stack(supervisord_pid: int | None = None) -> None:
    """Have supervisord stop every program gracefully and the stack exit with status 1.

    supervisord is the parent of every program it runs; `supervisord_pid` is for code
    running inside supervisord itself.
    """
    with open(os.path.join(os.environ["SUPERVISOR_RUN_DIR"], FATAL_MARKER), "ab"):
        pass
    os.kill(supervisord_pid or os.getppid(), signal.SIGTERM)


class _NoMethods:
    """The XML-RPC namespace supervisord asks the factory for: nothing to call in it."""


def stop_on_fatal(supervisord: Any, **_config: str) -> _NoMethods:
    """Have supervisord stop the stack with a failure when a program goes FATAL (it cannot
    be kept running), so that the platform restarts the container instead of leaving it
    half alive.

    supervisord calls this as an `[rpcinterface:...]` factory, its way of loading code
    into itself, after it has reset its event subscriptions at start-up (and on every
    reload). An event listener would do the same from a process of its own, one that holds
    at least 10 MiB for as long as the stack runs, for a callback of a few lines.
    """
    # supervisord's own modules: this runs inside supervisord only.
    from supervisor import events  # noqa: PLC0415

    subscription = (events.ProcessStateFatalEvent, _stop_on_fatal)
    # Called once for each of supervisord's servers: one subscription is enough.
    if subscription not in events.callbacks:
        events.subscribe(*subscription)
    return _NoMethods()


def _stop_on_fatal(event: Any) -> None:
    config = event.process.config
    config.options.logger.critical(
        f"{config.name} cannot be kept running: stopping the stack with a failure"
    )
    # Through supervisord's own SIGTERM handling: the orderly stop of every program.
    stop_the_stack(os.getpid())
