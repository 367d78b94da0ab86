"""Log format for all three processes: every line names its service and its request id."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO, cast

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


# Control characters a client could put into a logged value (a decoded path, a user agent,
# an email): written as they came, a newline would start a forged log line and a NUL would
# corrupt the log. Each is written as a visible escape instead, so nothing is lost.
_CONTROL_ESCAPES = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)
}


def escape_control_characters(text: str) -> str:
    """`text` with every control character (and Unicode line separator) written as `\\xNN`."""
    # isprintable() is False for every character escaped here (and a few more, which
    # translate() leaves as they are): most lines skip the translation.
    return text if text.isprintable() else text.translate(_CONTROL_ESCAPES)


class _EscapingFormatter(logging.Formatter):
    """Escapes control characters in each record's message; tracebacks keep their lines.

    The time is formatted once per second (then only its milliseconds): strftime for each
    access line was a sixth of its cost.
    """

    _second: int | None = None
    _second_text = ""

    def formatTime(  # noqa: N802 (logging's name)
        self, record: logging.LogRecord, datefmt: str | None = None
    ) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._second_text},{int(record.msecs):03d}"  # as logging writes them

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = escape_control_characters(record.message)
        return super().formatMessage(record)


# The access line, which RequestContextMiddleware logs on the "access" logger. Its arguments
# (method, path, status, milliseconds) are its fields in the JSON format: passing them as
# `extra` as well cost a quarter of the line (bench/history.md).
ACCESS_LOGGER = "access"
ACCESS_LINE = "%s %s %d %.1fms"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, process, request id, logger, message, and for
    access lines their fields. JSON escapes every control character, so no value can start
    a line of its own."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "process": getattr(record, "service", "-"),
            "request_id": getattr(record, "request_id", "-"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.name == ACCESS_LOGGER and record.msg == ACCESS_LINE:
            method, path, status, milliseconds = cast(tuple[str, str, int, float], record.args)
            entry.update(
                method=method, path=path, status=status, duration_ms=round(milliseconds, 1)
            )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


# How long a line logged in the event loop may wait to be written with those after it.
FLUSH_INTERVAL_SECONDS = 0.05
# Lines that are written at once, however recent the first: a burst holds no more than this.
MAX_WAITING_LINES = 512


class _ServiceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes the lines logged in the event loop's thread within FLUSH_INTERVAL_SECONDS with
    one write.

    A write to the pipe the process manager reads is a system call that wakes the reader, a
    Python process (supervisord) that copies it on: one per turn of the event loop cost the
    list through the gateway about a fifth of its throughput (bench/history.md). Lines
    logged in the loop's thread wait for a timer the first of them sets, or until
    MAX_WAITING_LINES wait; lines logged where no loop runs are written at once, after any
    still waiting, so the order is kept. `flush` and `close` (logging's shutdown at exit
    calls both) write whatever waits: only a process killed outright loses its last
    FLUSH_INTERVAL_SECONDS of lines. The handler holds the lines itself: deferring only the
    stream's flush would still write each line on its own where stdout writes through
    (PYTHONUNBUFFERED, as the image sets it).

    Its class also marks the handler this module installs, so that reconfiguring replaces
    only it.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._waiting: list[str] = []
        # The loop a flush is scheduled on, if any (one timer at a time).
        self._flush_on: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except RecursionError:  # as logging's own handlers do
            raise
        except Exception:
            self.handleError(record)
            return
        self._waiting.append(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_waiting()
            return
        if len(self._waiting) >= MAX_WAITING_LINES:
            self._write_waiting()
        elif self._flush_on is not loop:
            self._flush_on = loop
            loop.call_later(FLUSH_INTERVAL_SECONDS, self._flush_due)

    def _flush_due(self) -> None:
        self.acquire()
        try:
            self._flush_on = None
            self._write_waiting()
        finally:
            self.release()

    def _write_waiting(self) -> None:
        # As logging's handlers treat a failed emit: report, never raise into the caller.
        try:
            self.flush()
        except Exception:
            if logging.raiseExceptions:
                traceback.print_exc(file=sys.stderr)

    def flush(self) -> None:
        """Writes the waiting lines. Raises what the stream raises, as StreamHandler.flush
        does: logging's shutdown at exit ignores a stream already closed."""
        self.acquire()
        try:
            if self._waiting:
                text = "".join(self._waiting)
                self._waiting.clear()
                self.stream.write(text)
            super().flush()
        finally:
            self.release()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            super().close()


def configure_logging(level: str, service: str, log_format: str = "text") -> None:
    """Send every logger, uvicorn's included, through one handler on stdout, as text or
    (`log_format="json"`) as one JSON object per line."""
    # Neither format shows the caller, thread, process or task of a line: logging need not
    # look them up for each record (the logging HOWTO's "Optimization"), a tenth of an
    # access line's cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # Python 3.12 and later (the image's): the asyncio task's name, 90 ns of each record.
    # (Type-checked as 3.11, whose logging has no such flag.)
    logging.logAsyncioTasks = False  # type: ignore[attr-defined]
    handler = _ServiceHandler(sys.stdout)
    handler.addFilter(_ContextFilter(service))
    formatter = JSONFormatter() if log_format == "json" else _EscapingFormatter(LOG_FORMAT)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ServiceHandler)]:
        root.removeHandler(old)
        # What it still holds goes out; its stream may be closed already (as at shutdown).
        with contextlib.suppress(OSError, ValueError):
            old.flush()
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
