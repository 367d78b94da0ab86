"""Log output in tests."""

from __future__ import annotations

import logging


def write_waiting_lines() -> None:
    """Write the lines the service's log handler holds for a moment (shared.logging)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
