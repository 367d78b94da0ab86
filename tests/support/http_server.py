"""Serve an ASGI app over real HTTP on a free loopback port, inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import ASGIApp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # surfaces a failure to bind
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
