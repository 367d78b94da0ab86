"""The WebSocket transport of shared.database_transport: asyncpg's connections carried over
WebSockets, through a loopback listener. Imported only by a service that uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Coroutine
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websocket_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from shared.database_tls import DatabaseConfigurationError, Tls
from shared.database_transport import origin

_CHUNK = 65536


class WebSocketBridge:
    """A loopback listener whose every connection is carried over a WebSocket of its own.

    The WebSocket is opened before asyncpg connects to the listener, so a failure to reach
    it is raised with its real cause instead of surfacing as a closed socket.
    """

    def __init__(self, url: str, tls: Tls, open_timeout: float) -> None:
        self.url = url
        self._ssl = tls.context if url.startswith("wss:") else None
        self._open_timeout = open_timeout
        self._server: asyncio.Server | None = None
        self._waiting: deque[ClientConnection] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> tuple[str, int]:
        """Open one WebSocket; return the loopback address asyncpg connects to for it."""
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        try:
            websocket = await websocket_connect(
                self.url,
                ssl=self._ssl,
                open_timeout=self._open_timeout,
                max_size=None,
                compression=None,
                proxy=None,
                # The database's own timeouts bound every query; the keepalive pings find a
                # WebSocket that died silently.
                ping_interval=20,
                ping_timeout=20,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            message = f"the WebSocket endpoint {origin(self.url)} answered HTTP {status}"
            if 400 <= status < 500 and status not in (408, 429):
                raise DatabaseConfigurationError(
                    f"{message}: check DATABASE_WEBSOCKET_URL, or set DATABASE_TRANSPORT=tcp"
                ) from None
            raise ConnectionError(message) from exc
        except InvalidURI:
            raise DatabaseConfigurationError(
                "DATABASE_WEBSOCKET_URL must be a ws:// or wss:// URL"
            ) from None
        except (WebSocketException, OSError, TimeoutError) as exc:
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise
            raise ConnectionError(
                f"WebSocket to {origin(self.url)} failed: {exc or type(exc).__name__}"
            ) from exc
        self._waiting.append(websocket)
        address: tuple[str, int] = self._server.sockets[0].getsockname()[:2]
        return address

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._waiting:
            writer.close()
            return
        websocket = self._waiting.popleft()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await _bridge(reader, writer, websocket)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def aclose(self) -> None:
        while self._waiting:
            await self._waiting.popleft().close()
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()


async def _bridge(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, websocket: ClientConnection
) -> None:
    """Copy bytes both ways until either side ends, then end the other."""

    async def upstream() -> None:
        while data := await reader.read(_CHUNK):
            await websocket.send(data)

    async def downstream() -> None:
        async for message in websocket:
            writer.write(message if isinstance(message, bytes) else message.encode())
            await writer.drain()

    try:
        await copy_both_ways(upstream(), downstream())
    finally:
        # A dropped WebSocket closes the loopback socket: asyncpg sees a lost connection, so
        # an open transaction fails (and is never acknowledged) instead of hanging.
        writer.close()
        with contextlib.suppress(OSError, ConnectionClosed):
            await websocket.close()


async def copy_both_ways(*copies: Coroutine[Any, Any, None]) -> None:
    """Run the copies until one ends, then cancel the rest and wait for them.

    A copy ending on a closed WebSocket or socket is a side going away, not an error.
    """
    tasks = [asyncio.create_task(copy) for copy in copies]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                await task
