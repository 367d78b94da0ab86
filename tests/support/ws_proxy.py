"""A WebSocket-to-TCP proxy standing in for Neon's (`wss://<host>/v2`, wire protocol in
binary frames), built on the `websockets` server; it can drop connections on cue."""

from __future__ import annotations

import asyncio
import ssl

from websockets.asyncio.server import Server, ServerConnection, serve

from shared.database_websocket import copy_both_ways


class WebSocketProxy:
    """Carries each WebSocket to its own TCP connection to `target`.

    `drop_after(marker)`: once a client frame holding `marker` (a statement's parameter,
    say) has gone on to the server, nothing more passes either way: that WebSocket is cut
    before the server's answer, as a network failure mid-statement would.
    """

    def __init__(self, target_host: str, target_port: int, tls: ssl.SSLContext | None = None):
        self.target = (target_host, target_port)
        self.tls = tls
        self.port = 0
        self.paths: list[str] = []
        self.connections = 0
        self._server: Server | None = None
        self._drop_marker: bytes | None = None
        self.dropped = asyncio.Event()

    @property
    def url(self) -> str:
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://localhost:{self.port}/v2"

    async def start(self) -> None:
        self._server = await serve(
            self._handle, "127.0.0.1", self.port, ssl=self.tls, max_size=None
        )
        self.port = self._server.sockets[0].getsockname()[1] if not self.port else self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def drop_after(self, marker: bytes) -> None:
        self.dropped.clear()
        self._drop_marker = marker

    async def _handle(self, websocket: ServerConnection) -> None:
        self.connections += 1
        self.paths.append(websocket.request.path if websocket.request else "")
        reader, writer = await asyncio.open_connection(*self.target)
        armed = False

        def cut() -> None:
            self.dropped.set()
            # No close frame: the connection just goes, as on a network failure.
            websocket.transport.abort()

        async def upstream() -> None:
            nonlocal armed
            async for message in websocket:
                data = message if isinstance(message, bytes) else message.encode()
                if armed:
                    cut()
                    return
                if self._drop_marker is not None and self._drop_marker in data:
                    self._drop_marker = None
                    armed = True
                writer.write(data)
                await writer.drain()

        async def downstream() -> None:
            while data := await reader.read(65536):
                if armed:
                    cut()
                    return
                await websocket.send(data)

        try:
            await copy_both_ways(upstream(), downstream())
        finally:
            writer.close()
