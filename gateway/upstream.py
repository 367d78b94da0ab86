"""The services behind the gateway, each with connection pools of its own."""

from __future__ import annotations

import http.cookiejar
from dataclasses import dataclass, field

import httpx2

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


@dataclass(frozen=True)
class Upstream:
    """A service the gateway forwards to.

    Each service has its own pools, so one that stalls cannot starve the other; and the
    gateway's own calls do not queue behind proxied requests, so /health answers while
    the proxy pool is full.
    """

    name: str
    base_url: str
    client: httpx2.AsyncClient  # proxied requests
    probe_client: httpx2.AsyncClient  # /health and OpenAPI fetches
    load: PoolLoad = field(default_factory=lambda: PoolLoad(MAX_CONNECTIONS_PER_SERVICE))

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.probe_client.aclose()


class _RefuseAllCookies(http.cookiejar.DefaultCookiePolicy):
    """The clients serve every user: they must never keep one user's cookie."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False


def create_client(
    *, connect_timeout: float, timeout: float, max_connections: int
) -> httpx2.AsyncClient:
    """A keep-alive pool without redirects, cookies or environment settings.

    Waiting for a free connection is limited like connecting (not the whole `timeout`):
    the caller can tell a busy service from a slow one early.
    """
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(timeout, connect=connect_timeout, pool=connect_timeout),
        limits=httpx2.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
        ),
        follow_redirects=False,
        trust_env=False,
        cookies=http.cookiejar.CookieJar(policy=_RefuseAllCookies()),
    )


def open_upstream(
    name: str, base_url: str, *, connect_timeout: float, timeout: float, probe_timeout: float
) -> Upstream:
    """An upstream with fresh pools; close it with `aclose`."""
    return Upstream(
        name=name,
        base_url=base_url,
        client=create_client(
            connect_timeout=connect_timeout,
            timeout=timeout,
            max_connections=MAX_CONNECTIONS_PER_SERVICE,
        ),
        probe_client=create_client(
            connect_timeout=probe_timeout,
            timeout=probe_timeout,
            max_connections=MAX_PROBE_CONNECTIONS,
        ),
    )
