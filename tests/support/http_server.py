"""Serve an ASGI app over real HTTP on a free loopback port, inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp


def ephemeral_ports() -> range:
    """The ports the kernel picks for outgoing connections (Linux's default if unreadable)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


# Below the ephemeral range. A port found by binding port 0 is an ephemeral one: any
# connection made before the server meant for it binds (a stack's or a container's process,
# seconds later) can be given it as its own local port, and the server fails to start.
_PORTS = range(10000, min(ephemeral_ports().start, 32768))


def free_port() -> int:
    """A loopback port nothing is bound to now, and that no outgoing connection will take."""
    for _ in range(200):
        # Where the ephemeral range starts lower than usual, any free port must do.
        port = random.choice(_PORTS) if _PORTS else 0
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            bound: int = sock.getsockname()[1]
            return bound
    raise RuntimeError(f"no free port in {_PORTS}")


class _Server(uvicorn.Server):
    """uvicorn's server, stopping as soon as it is told to: not at its next 0.1 s tick, and
    without its 0.1 s pause for open connections to close when none is open. A test's
    servers stop one after another, and each pause adds up."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_requested = asyncio.Event()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exit_requested.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets)
            return
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()


@contextlib.asynccontextmanager
async def serve(
    app: ASGIApp,
    port: int | None = None,
    *,
    forwarded_allow_ips: str | None = None,
    http: type[asyncio.Protocol] | str = "auto",
) -> AsyncIterator[str]:
    """Yield the base URL while the app is served.

    Like uvicorn, it trusts forwarding headers from 127.0.0.1 unless `forwarded_allow_ips`
    says otherwise. `http` is the protocol class, as `uvicorn --http` takes it.
    """
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        # A stand-in left stalling on purpose must not hold up the end of the test.
        timeout_graceful_shutdown=1,
        forwarded_allow_ips=forwarded_allow_ips,
        http=http,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # surfaces a failure to bind
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.exit_requested.set()
        await task
