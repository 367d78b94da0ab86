"""A floor for the gateway: a request relayed through the gateway's HTTP client, nothing else.

Raw ASGI under the gateway's own server (`python -m uvicorn bench.proxy_reference:app
--http shared.server:Protocol`, with PROXY_REFERENCE_UPSTREAM): each request goes to the
upstream through an aiohttp session opened exactly as the gateway opens its own, and its
answer comes back whole. No header rules, limits, timeouts of the body, request ids, logs,
metrics or disconnect handling: what is left is what the server and the client library
cost, the part of the gateway's CPU per request that no change of its own code can remove.
"""

from __future__ import annotations

import os

import aiohttp
from starlette.types import Receive, Scope, Send
from yarl import URL

from gateway.upstream import Upstream, open_upstream

_state: dict[str, Upstream] = {}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI application."""
    if scope["type"] == "lifespan":
        await receive()  # startup
        _state["upstream"] = open_upstream(
            "upstream",
            os.environ["PROXY_REFERENCE_UPSTREAM"],
            connect_timeout=5,
            timeout=30,
            probe_timeout=5,
        )
        await send({"type": "lifespan.startup.complete"})
        await receive()  # shutdown
        await _state.pop("upstream").aclose()
        await send({"type": "lifespan.shutdown.complete"})
        return
    upstream = _state["upstream"]
    target = URL(upstream.base_url + scope["raw_path"].decode("latin-1"), encoded=True)
    try:
        async with upstream.session.get(target, allow_redirects=False) as response:
            body = await response.read()
            status = response.status
    except aiohttp.ClientError:
        status, body = 502, b'{"detail":"Bad Gateway","code":"upstream_unreachable"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
