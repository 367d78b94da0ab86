"""Log format for all three processes: every line names its service and its request id."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

# Set per request by RequestContextMiddleware; "-" outside a request.
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)s %(service)s [%(request_id)s] %(name)s: %(message)s"


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.service = self.service
        return True


class _ServiceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installs so that reconfiguring replaces only it."""


def configure_logging(level: str, service: str) -> None:
    """Send every logger, uvicorn's included, through one handler on stdout."""
    handler = _ServiceHandler(sys.stdout)
    handler.addFilter(_ContextFilter(service))
    handler.setFormatter(logging.Formatter(LOG_FORMAT))

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ServiceHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)

    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # RequestContextMiddleware writes the access log, with request ids and durations.
    logging.getLogger("uvicorn.access").disabled = True
    # The HTTP client would log each upstream call at INFO, query strings included.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpcore2").setLevel(logging.WARNING)
    # At DEBUG the SQLite driver logs every call with its arguments (emails, password and
    # token hashes), bypassing the engine's hide_parameters.
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
