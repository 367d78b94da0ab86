"""What the gateway's proxy and routes share."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.openapi import OpenAPICache
from gateway.settings import GatewaySettings
from gateway.upstream import Upstream


@dataclass
class GatewayState:
    """What the gateway's routes and proxy share. The lifespan closes the upstreams."""

    settings: GatewaySettings
    auth: Upstream
    tasks: Upstream
    openapi: OpenAPICache

    def upstream_for(self, path: str) -> Upstream | None:
        """Which service serves a path: `/auth/*` and `/api/users/*` auth, other `/api/*` tasks."""
        if path.startswith("/auth/") or path == "/auth":
            return self.auth
        if path.startswith("/api/"):
            if path.startswith("/api/users/") or path == "/api/users":
                return self.auth
            return self.tasks
        return None
