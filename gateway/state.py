"""What the gateway's proxy and routes share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from gateway.openapi import OpenAPICache
from gateway.settings import GatewaySettings
from gateway.upstream import Upstream

logger = logging.getLogger(__name__)


@dataclass
class GatewayState:
    """What the gateway's routes and proxy share; the lifespan starts and closes it."""

    settings: GatewaySettings
    auth: Upstream
    tasks: Upstream
    openapi: OpenAPICache
    _warm_up: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def upstream_for(self, path: str) -> Upstream | None:
        """Which service serves a path: `/auth/*` and `/api/users/*` auth, other `/api/*` tasks."""
        if path.startswith("/auth/") or path == "/auth":
            return self.auth
        if path.startswith("/api/"):
            if path.startswith("/api/users/") or path == "/api/users":
                return self.auth
            return self.tasks
        return None

    async def start(self) -> None:
        if "*" in self.settings.allowed_origins:
            logger.warning("ALLOWED_ORIGINS contains '*': any website may call this API")
        # The services may still be starting: fetch their documents without holding up ours.
        self._warm_up = asyncio.create_task(self.openapi.warm_up())

    async def aclose(self) -> None:
        """Stop the warm-up and close the clients."""
        try:
            if self._warm_up is not None:
                self._warm_up.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._warm_up
            await self.openapi.aclose()
        finally:
            try:
                await self.auth.aclose()
            finally:
                await self.tasks.aclose()
