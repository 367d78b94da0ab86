"""The stack as the benchmark runs it: `python app.py` on free ports, sign-in limits lifted."""

from __future__ import annotations

import uuid

from bench.config import SECRET_KEY, WORK
from tests.support.stack import Stack, launch


def start(**overrides: str) -> Stack:
    """Launch the stack with the benchmark's settings and wait until /health answers 200."""
    run_dir = WORK / f"stack-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True)
    settings = {
        "SECRET_KEY": SECRET_KEY,
        # The limiter would measure itself: sign-in throttling is not what is benchmarked.
        "AUTH_RATE_LIMIT": "100000000/minute",
        "LOGIN_FAILURE_LIMIT": "100000000/minute",
        **overrides,
    }
    stack = launch(run_dir, **settings)
    try:
        stack.wait_healthy()
    except BaseException:
        stack.stop()
        raise
    return stack
