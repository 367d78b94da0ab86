"""How a service's connections reach PostgreSQL: TCP, or the wire protocol over a WebSocket.

Some hosts (Hugging Face Spaces) allow outbound traffic on ports 80, 443 and 8080 only.
Neon also accepts the PostgreSQL protocol inside binary WebSocket frames on port 443
(`wss://<host>/v2`, the transport of its serverless driver), with TLS on the WebSocket
instead of inside the protocol. asyncpg speaks only TCP, so each service runs a loopback
listener and bridges every connection asyncpg opens to a WebSocket of its own: SQLAlchemy and
asyncpg work as they do over TCP. The bridge (shared/database_websocket.py) is imported only
when a connection takes that route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import asyncpg

from shared.database_tls import Tls, tls_for
from shared.database_url import DatabaseConfig, DatabaseUrl, Transport

if TYPE_CHECKING:
    from shared.database_websocket import WebSocketBridge

logger = logging.getLogger(__name__)

# How long `auto` waits for the database port before asking whether port 443 answers.
PROBE_TIMEOUT_SECONDS = 3.0


def websocket_url(url: DatabaseUrl, configured: str | None) -> str:
    """DATABASE_WEBSOCKET_URL, or Neon's endpoint for the URL's host."""
    if configured:
        return configured
    return f"wss://{url.host}/v2?address={url.host}:{url.port}"


def default_transport(url: DatabaseUrl, configured: Transport | None) -> Transport:
    """DATABASE_TRANSPORT, else `auto` for Neon hosts (which also listen on 443), else `tcp`."""
    if configured is not None:
        return configured
    return "auto" if url.is_neon else "tcp"


def origin(url: str) -> str:
    """A URL without its query (where Neon's endpoint names the database host), for logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


async def _answers(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port opens within PROBE_TIMEOUT_SECONDS."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            _reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


# Each statement a service sends is prepared once per connection (asyncpg's statement cache)
# and reads rows by id, or one user's page in the order of an index: a plan that its values do
# not change. PostgreSQL's default (`auto`) would still plan it anew at every execution, as its
# estimate of a generic plan, blind to LIMIT's value, comes out above the custom plans': that
# planning was half of PostgreSQL's CPU per list (bench/history.md). The plans the lists get
# this way are checked in tests/task_service/test_list_plans.py.
_GENERIC_PLANS = "SET plan_cache_mode = force_generic_plan"


async def _plan_once(connection: asyncpg.Connection, server_settings: dict[str, str]) -> None:
    """Make `connection` keep one plan per prepared statement, unless DATABASE_URL's
    `options` choose a plan_cache_mode (or the server predates the setting)."""
    if "plan_cache_mode" in server_settings.get("options", ""):
        return
    if connection.get_server_version().major < 12:  # PostgreSQL 12 added the setting
        return
    try:
        await connection.execute(_GENERIC_PLANS)
    except BaseException:
        connection.terminate()
        raise


class Connector:
    """Opens each asyncpg connection of one engine: TLS, pooler rules and transport."""

    def __init__(
        self,
        url: DatabaseUrl,
        config: DatabaseConfig,
        *,
        transaction_pooler: bool,
        statement_name: Callable[[], str] | None = None,
    ) -> None:
        self.url = url
        self.config = config
        self.transaction_pooler = transaction_pooler
        self.statement_name = statement_name or _unique_statement_name
        self.transport: Transport = default_transport(url, config.transport)
        self.websocket_url = websocket_url(url, config.websocket_url)
        self._tls: Tls | None = None
        self._bridge: WebSocketBridge | None = None
        # `auto` decides once: after a first success, later failures are outages, not a
        # blocked port.
        self._route: Literal["tcp", "websocket"] | None = (
            None if self.transport == "auto" else self.transport
        )

    @property
    def connect_timeout(self) -> float:
        return self.url.connect_timeout or self.config.connect_timeout

    def tls(self) -> Tls:
        """Built on first use, so a missing certificate is a start-up error, not an import one."""
        if self._tls is None:
            self._tls = tls_for(self.url)
            logger.info("Database TLS: %s", self._tls.describe())
        return self._tls

    async def connect(self) -> Any:
        """A new asyncpg connection (the engine's `async_creator`)."""
        tls = self.tls()
        route = self._route or await self._choose_route()
        if route == "websocket":
            if self._bridge is None:
                # Imported on first use: the WebSocket client is memory every other
                # deployment would hold for nothing.
                from shared.database_websocket import WebSocketBridge  # noqa: PLC0415

                self._bridge = WebSocketBridge(self.websocket_url, tls, self.connect_timeout)
            host, port = await self._bridge.open()
            ssl_argument: Any = False
        else:
            host, port, ssl_argument = self.url.host, self.url.port, tls.asyncpg_ssl
        arguments: dict[str, Any] = {}
        if self.transaction_pooler:
            # A transaction pooler may run each transaction on another server connection:
            # asyncpg must not cache named statements (SQLAlchemy's own cache is off too).
            arguments["statement_cache_size"] = 0
        connection = await asyncpg.connect(
            host=host,
            port=port,
            user=self.url.user,
            password=self.url.password,
            database=self.url.database,
            ssl=ssl_argument,
            timeout=self.connect_timeout,
            command_timeout=self.config.command_timeout,
            server_settings=dict(self.url.server_settings) or None,
            **arguments,
        )
        if not self.transaction_pooler:
            # Under a transaction pooler the setting would stay with a server connection that
            # other clients share, and no statement is prepared for longer than one run.
            await _plan_once(connection, self.url.server_settings)
        if self._route is None:
            self._route = "tcp"
        return connection

    async def _choose_route(self) -> Literal["tcp", "websocket"]:
        if await _answers(self.url.host, self.url.port):
            return "tcp"
        parts = urlsplit(self.websocket_url)
        ws_port = parts.port or (443 if parts.scheme == "wss" else 80)
        if not await _answers(parts.hostname or self.url.host, ws_port):
            return "tcp"  # Neither answers: report the TCP failure, and decide next time.
        logger.warning(
            "Database port %s on %s does not answer but %s does: using the WebSocket "
            "transport (DATABASE_TRANSPORT=websocket skips this check)",
            self.url.port,
            self.url.host,
            origin(self.websocket_url),
        )
        self._route = "websocket"
        return "websocket"

    async def aclose(self) -> None:
        if self._bridge is not None:
            await self._bridge.aclose()


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"
