"""The HTTP protocol every process serves with: uvicorn's httptools protocol, with limits.

uvicorn's default parser (httptools) keeps every header a client sends, however large;
uvicorn closes no connection that never finishes its request headers, and accepts any
number of connections. This protocol adds the three bounds, before the app sees anything:

- request headers over `MAX_HEADER_BYTES` or `MAX_HEADER_FIELDS` fields: 431;
- request headers not complete within `HEADER_TIMEOUT` of their first byte (or of the
  connection opening): 408 where some of them came, and the connection is closed;
- a connection past `MAX_CONNECTIONS` open ones: 503 at once, and closed.

Every refusal carries the API's error body. Run with `uvicorn --http shared.server:Protocol`.

It also sends what a response writes during one turn of the event loop in one write: uvicorn
writes a response's status line and headers, then its body, each with a system call of its
own (see `_TurnWriter`); and it tells the app at once when a client's connection is lost
(`Connection`, in each request's scope under `CONNECTION_EXTENSION`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
from starlette.types import Scope
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from shared.errors import ErrorCode, error_body
from shared.settings import CommonSettings, load_settings

MAX_HEADER_FIELDS = 100
# Refused connections are counted and reported at most this often: a flood of them must
# not become a flood of log lines.
REFUSAL_REPORT_INTERVAL_S = 10.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerLimits:
    """What one process's server accepts from its clients."""

    max_header_bytes: int
    header_timeout: float
    max_connections: int
    max_header_fields: int = MAX_HEADER_FIELDS

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> ServerLimits:
        return cls(settings.max_header_bytes, settings.header_timeout, settings.max_connections)


@functools.cache
def _limits_from_environment() -> ServerLimits:
    return ServerLimits.from_settings(load_settings(CommonSettings))


class _RefusalReport:
    """Counts refused connections; logs one warning per interval with the count."""

    def __init__(self) -> None:
        self.refused = 0
        self.last_report = 0.0

    def add(self, limit: int) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self.last_report >= REFUSAL_REPORT_INTERVAL_S:
            logger.warning(
                "%d connection(s) refused: MAX_CONNECTIONS (%d) are open", self.refused, limit
            )
            self.refused, self.last_report = 0, now


_refusals = _RefusalReport()


def _response(code: ErrorCode, detail: str, extra: list[tuple[bytes, bytes]]) -> bytes:
    body = json.dumps(error_body(code, detail)).encode()
    lines = [f"HTTP/1.1 {code.status} {HTTPStatus(code.status).phrase}".encode()]
    lines += [name + b": " + value for name, value in extra]
    lines += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# Where a request's scope holds its `Connection` (`scope["extensions"]`), under this server.
CONNECTION_EXTENSION = "todo.connection"


class Connection:
    """A client's connection as the app may see it beyond ASGI: whether it is lost, and a
    callback run the moment it is.

    ASGI tells an app that its client left only through `receive()`, so an app that must
    notice while it waits on something else needs a task of its own awaiting `receive()`.
    A callback costs a list append instead.
    """

    __slots__ = ("_callbacks", "lost")

    def __init__(self) -> None:
        self.lost = False
        self._callbacks: list[Callable[[], None]] = []

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Run `callback` when the connection is lost (it is not, yet: see `lost`)."""
        self._callbacks.append(callback)

    def forget(self, callback: Callable[[], None]) -> None:
        """No longer run `callback` (it may have run already)."""
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def lose(self) -> None:
        self.lost = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


def connection_of(scope: Scope) -> Connection | None:
    """The request's `Connection`, when this server serves it."""
    extension = scope.get("extensions", {}).get(CONNECTION_EXTENSION)
    connection = None if extension is None else extension.get("connection")
    return connection if isinstance(connection, Connection) else None


class _TurnWriter(asyncio.Transport):
    """The connection as a response sees it: what the response writes during one turn of the
    event loop is sent with one write at the end of that turn.

    uvicorn writes the status line and headers when the response starts and the body when it
    comes, a system call each; an answer whose body follows at once (nearly every one) now
    costs one. A body that comes later (a stream) is sent as it comes, a turn later at most.
    Closing sends what waits first.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._waiting: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._waiting:
            self._loop.call_soon(self.flush)
        self._waiting.append(bytes(data))

    def flush(self) -> None:
        """Send what waits now (before the connection writes anything of its own)."""
        if self._waiting:
            data = self._waiting[0] if len(self._waiting) == 1 else b"".join(self._waiting)
            self._waiting = []
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


class Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded headers, header time and connections."""

    # Set on a subclass by `with_limits`; else read once from the environment.
    limits: ClassVar[ServerLimits | None] = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = self.limits or _limits_from_environment()
        self._head_timer: asyncio.TimerHandle | None = None
        self._reading_head = True
        self._head_received = 0  # bytes received while the current head was incomplete
        # A request's head has begun and is not complete (its first bytes may have come with
        # the end of the request before, which _head_received does not count).
        self._head_begun = False
        self._head_size = 0  # of the request line and the header fields parsed so far
        self._head_fields = 0
        self._too_large = False

    @classmethod
    def with_limits(cls, limits: ServerLimits) -> type[Protocol]:
        """This protocol with given limits instead of the environment's."""
        return type("ConfiguredProtocol", (cls,), {"limits": limits})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._writer = _TurnWriter(transport, self.loop)
        self._connection = Connection()
        if len(self.connections) >= self._limits.max_connections:
            self.transport = transport  # closed by connection_lost
            _refusals.add(self._limits.max_connections)
            transport.write(
                _response(
                    ErrorCode.TOO_MANY_CONNECTIONS,
                    "Too many connections, retry shortly",
                    [(b"retry-after", b"1")],
                )
            )
            transport.close()
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)
        self._connection.lose()

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_received += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self._too_large:
                self._refuse_headers()
            else:
                self.send_400_response("Invalid HTTP request received.")
            return
        # httptools buffers a header until its end: a head still incomplete is bounded here.
        if self._reading_head and self._head_received > self._limits.max_header_bytes:
            self._refuse_headers()
        elif self._reading_head:
            # A head begun in this data and not complete: its time runs from now. One that
            # came whole (nearly every one) never needs the timer.
            self._arm_head_timer()

    def send_400_response(self, msg: str) -> None:
        logger.info("Refused a malformed request")
        self._refuse(ErrorCode.BAD_REQUEST, msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # ASGI extensions are dicts: the Connection is the one entry of this one.
        self.scope["extensions"] = {CONNECTION_EXTENSION: {"connection": self._connection}}
        self._reading_head = self._head_begun = True
        self._head_size = self._head_fields = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count(len(url), fields=0)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4, fields=1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = self._head_begun = False
        self._head_received = 0
        self._disarm_head_timer()
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous:
            self.cycle.transport = self._writer

    def shutdown(self) -> None:
        self._writer.flush()
        super().shutdown()

    def _count(self, size: int, *, fields: int) -> None:
        self._head_size += size
        self._head_fields += fields
        limits = self._limits
        if self._head_size > limits.max_header_bytes or (
            self._head_fields > limits.max_header_fields
        ):
            self._too_large = True
            raise _HeadersTooLargeError

    def _refuse_headers(self) -> None:
        logger.info("Refused request headers over the limits")
        self._refuse(ErrorCode.HEADERS_TOO_LARGE, "Request headers too large")

    def _refuse(self, code: ErrorCode, detail: str) -> None:
        self._disarm_head_timer()
        # An answer still waiting to be written goes before the refusal.
        self._writer.flush()
        if not self.transport.is_closing():
            self.transport.write(_response(code, detail, self.server_state.default_headers))
            self.transport.close()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self._limits.header_timeout, self._head_timed_out
            )

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        answerable = self.cycle is None or self.cycle.response_complete
        if (self._head_received or self._head_begun) and answerable:
            logger.info("Request headers not received in time")
            self._refuse(ErrorCode.HEADER_TIMEOUT, "Request headers not received in time")
        else:
            # Nothing of a request came (or an answer is still being written): just close.
            self.transport.close()


class _HeadersTooLargeError(Exception):
    """Raised from a parser callback to stop parsing; the protocol answers 431."""
