"""Throttling of sign-in endpoints, on the maintained `limits` library.

Two limits: requests per client on register, login and refresh; and failed logins per
account and client, so that an attacker elsewhere cannot lock a user out. A client is an
IPv4 address or an IPv6 /64 network (`client_address`). Counters live
in memory, or in Redis when several instances must share them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from auth_service.settings import AuthSettings
from shared.errors import ApiError, ErrorCode
from shared.metrics import RATE_LIMITED

if TYPE_CHECKING:
    import redis.asyncio

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RateLimitedError(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class AuthRateLimiter:
    """The auth service's two limits over one storage.

    When the storage fails (Redis unreachable or hung) requests are let through and the
    failure logged: an outage of the counter store must not lock every user out.
    """

    def __init__(self, settings: AuthSettings) -> None:
        url = settings.rate_limit_storage_url
        self._pool: redis.asyncio.ConnectionPool | None = None
        if url is None or url.startswith("memory://"):
            self.storage = storage_from_string("async+memory://", wrap_exceptions=True)
        else:
            # Imported here only: the Redis client is about 6 MiB of the service's memory
            # (bench/history.md), which counters in memory do not need.
            import redis.asyncio  # noqa: PLC0415

            # Our own pool, so shutdown can close it; short timeouts, so a dead Redis costs
            # a login seconds at most instead of hanging it.
            timeout = settings.rate_limit_storage_timeout
            self._pool = redis.asyncio.ConnectionPool.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout
            )
            # limits hands these to redis-py (its annotations only name scalar options).
            options: dict[str, Any] = {"implementation": "redispy", "connection_pool": self._pool}
            self.storage = storage_from_string(f"async+{url}", wrap_exceptions=True, **options)
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.per_ip = parse(settings.auth_rate_limit)
        self.failures = parse(settings.login_failure_limit)
        # Until when (time.monotonic()) the storage is skipped after a failure.
        self._storage_down_until = 0.0
        self._storage_retry_seconds = settings.rate_limit_storage_retry_seconds

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def hit_client(self, client: str) -> None:
        """Count one request of a client; RateLimitedError when it is over its limit."""
        await self._hit(self.per_ip, "auth", client)

    async def hit_login(self, email: str, client: str) -> None:
        """Count one login attempt on an account from a client, before its password is
        checked; RateLimitedError when that client has failed too often on that account.

        Counting first is what makes the limit hold under concurrency: a check followed by
        a count after the (slow) password check would let every concurrent guess through.
        A successful login clears the count, so only failures accumulate.
        """
        await self._hit(self.failures, "login-failure", _account_key(email), client)

    async def clear_failures(self, email: str, client: str) -> None:
        account = _account_key(email)
        await self._use_storage(
            lambda: self.strategy.clear(self.failures, "login-failure", account, client), None
        )

    async def _hit(self, item: RateLimitItem, *identifiers: str) -> None:
        allowed = await self._use_storage(lambda: self.strategy.hit(item, *identifiers), True)
        if not allowed:
            RATE_LIMITED.labels(identifiers[0]).inc()
            raise RateLimitedError(await self._retry_after(item, *identifiers))

    async def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        stats = await self._use_storage(
            lambda: self.strategy.get_window_stats(item, *identifiers), None
        )
        if stats is None:
            return item.get_expiry()
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def _use_storage(self, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        """The result of one storage call, or `fallback` while the storage is failing.

        After a failure the storage is left alone for RATE_LIMIT_STORAGE_RETRY_SECONDS, and
        the failure logged once for that period: a hung Redis would otherwise cost each of a
        login's calls its full socket timeout.
        """
        if time.monotonic() < self._storage_down_until:
            return fallback
        try:
            return await call()
        except StorageError as exc:
            if time.monotonic() >= self._storage_down_until:
                logger.error(
                    "Rate limit storage unavailable, not limiting for %g s: %s",
                    self._storage_retry_seconds,
                    exc,
                )
            self._storage_down_until = time.monotonic() + self._storage_retry_seconds
            return fallback


def _account_key(email: str) -> str:
    """What the counter store keeps of an account: a digest, not the email itself."""
    return hashlib.sha256(email.encode()).hexdigest()[:32]


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(
        ErrorCode.RATE_LIMITED,
        f"Too many requests; retry in {retry_after} seconds",
        headers={"Retry-After": str(retry_after)},
    )


def client_address(request: Request) -> str:
    """The client as the limits count it, from the address uvicorn's --proxy-headers
    resolved: an IPv4 address, or an IPv6 client's whole /64.

    An IPv6 subscriber is usually given a /64 to use as it likes: counted per address, one
    client could step past every limit by changing address.
    """
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return host
