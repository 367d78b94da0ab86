"""The services behind the gateway, each with connection pools of its own."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from multidict import CIMultiDict

from shared.metrics import watch_pool

# An idle pooled connection is dropped before a service would close it (uvicorn does after
# 5 s idle by default). With equal timeouts the gateway can send a request on a connection
# the service is closing at that moment, and the client gets a 502 for nothing.
KEEPALIVE_EXPIRY_SECONDS = 4.0
# Proxied requests in flight to one service at a time; more wait for a free connection.
MAX_CONNECTIONS_PER_SERVICE = 200
# The gateway's own calls (health checks, OpenAPI fetches) are few and short.
MAX_PROBE_CONNECTIONS = 10


@dataclass
class PoolLoad:
    """Proxied requests to one service in flight; at the pool's size, it is full."""

    size: int
    in_flight: int = 0

    def done(self) -> None:
        self.in_flight -= 1

    @property
    def full(self) -> bool:
        return self.in_flight >= self.size


class _ClientHeadersOnly(aiohttp.ClientRequest):
    """aiohttp's request without its automatic headers (Accept, Accept-Encoding, User-Agent,
    a body's Content-Type): only the client's own go on, with Host.

    The session's `skip_auto_headers` leaves them out too, but builds the set of names to
    leave out anew for every request.
    """

    _LEFT_OUT: CIMultiDict[None] = CIMultiDict(
        (name, None) for name in ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")
    )

    def update_auto_headers(self, skip_auto_headers: Iterable[str] | None) -> None:
        self._skip_auto_headers = self._LEFT_OUT


@dataclass(eq=False)
class Upstream:
    """A service the gateway forwards to.

    Each service has its own pools, so one that stalls cannot starve the other; and the
    gateway's own calls do not queue behind proxied requests, so /health answers while
    the proxy pool is full.

    Proxied requests go through aiohttp's client: at a sixth of the CPU time per request
    of httpx2 (bench/history.md), it is what lets one gateway process keep up with the
    services. The probes, a few calls a minute, use it too, in a pool of their own: a
    second HTTP client would be 4 MiB more of the gateway's memory (bench/history.md).
    """

    name: str
    base_url: str
    connect_timeout: float
    timeout: float
    # For the probes (/health and OpenAPI fetches): each step of a call, and the wait for
    # a free connection, within this.
    probe_timeout: float
    load: PoolLoad = field(default_factory=lambda: PoolLoad(MAX_CONNECTIONS_PER_SERVICE))
    _session: aiohttp.ClientSession | None = None
    _probe_session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The proxy's pool, opened on first use (it needs the running event loop)."""
        if self._session is None:
            self._session = _open_session(
                self.load.size, connect_timeout=self.connect_timeout, timeout=self.timeout
            )
        return self._session

    async def probe(self, path: str) -> tuple[int, Any]:
        """GET one of the service's own routes: the status and the JSON body.

        Raises aiohttp.ClientError or TimeoutError when the service does not answer, and
        ValueError when the body is not JSON.
        """
        if self._probe_session is None:
            self._probe_session = _open_session(
                MAX_PROBE_CONNECTIONS,
                connect_timeout=self.probe_timeout,
                timeout=self.probe_timeout,
            )
        url = self.base_url + path
        async with self._probe_session.get(url, allow_redirects=False) as response:
            return response.status, await response.json(content_type=None)

    async def aclose(self) -> None:
        try:
            if self._session is not None:
                await self._session.close()
        finally:
            if self._probe_session is not None:
                await self._probe_session.close()


def _open_session(size: int, *, connect_timeout: float, timeout: float) -> aiohttp.ClientSession:
    """A keep-alive pool of `size` connections that follows no redirects, keeps no cookie
    and reads no proxy settings from the environment."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=size, keepalive_timeout=KEEPALIVE_EXPIRY_SECONDS),
        # Waiting for a free connection is bounded like connecting (not the whole
        # timeout): a busy service is told apart from a slow one early.
        timeout=aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=timeout
        ),
        # Bodies are relayed as they come, and only the client's own headers go on.
        auto_decompress=False,
        request_class=_ClientHeadersOnly,
        # It serves every user: it must never keep one user's cookie.
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


def open_upstream(
    name: str, base_url: str, *, connect_timeout: float, timeout: float, probe_timeout: float
) -> Upstream:
    """An upstream with fresh pools; close it with `aclose`."""
    upstream = Upstream(
        name=name,
        base_url=base_url,
        connect_timeout=connect_timeout,
        timeout=timeout,
        probe_timeout=probe_timeout,
    )
    load = upstream.load
    watch_pool("upstream", name, lambda: {"in_flight": load.in_flight, "limit": load.size})
    return upstream
