"""DATABASE_TRANSPORT: the PostgreSQL protocol over a WebSocket (Neon's wss://<host>/v2),
tried against a WebSocket-to-TCP proxy in front of the suite's own cluster."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from shared.database_transport import websocket_url
from shared.database_url import DatabaseConfig, Transport, parse_database_url
from shared.db import Database, create_database
from task_service.app import create_app
from task_service.settings import TaskSettings
from tests.support.asgi import serving
from tests.support.databases import unique_schema
from tests.support.pg_cluster import PLAIN_USER, HostedPostgres
from tests.support.tokens import BETTER_AUTH_SECRET, SECRET_KEY, bearer, mint
from tests.support.ws_proxy import WebSocketProxy


@pytest.fixture
async def ws_proxy(hosted_postgres: HostedPostgres) -> AsyncIterator[WebSocketProxy]:
    proxy = WebSocketProxy("127.0.0.1", hosted_postgres.port)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def wss_proxy(hosted_postgres: HostedPostgres) -> AsyncIterator[WebSocketProxy]:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certs = hosted_postgres.certs
    tls.load_cert_chain(certs.server_cert, certs.server_key)
    proxy = WebSocketProxy("127.0.0.1", hosted_postgres.port, tls=tls)
    await proxy.start()
    yield proxy
    await proxy.stop()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def _opened(
    url: str, tmp_path: Path, transport: Transport, ws_url: str
) -> AsyncIterator[Database]:
    config = DatabaseConfig(
        parse_database_url(url), data_dir=tmp_path, transport=transport, websocket_url=ws_url
    )
    database = create_database(config, schema="public", name="check")
    try:
        yield database
    finally:
        await database.dispose()


async def _server_address(database: Database) -> str:
    async with database.engine.connect() as connection:
        return str(await connection.scalar(text("SELECT current_user")))


def test_neon_hosts_default_to_auto_and_their_websocket_endpoint() -> None:
    url = parse_database_url("postgresql://u:p@ep-x-1.us-east-2.aws.neon.tech/db?sslmode=require")

    assert websocket_url(url, None) == (
        "wss://ep-x-1.us-east-2.aws.neon.tech/v2?address=ep-x-1.us-east-2.aws.neon.tech:5432"
    )
    config = DatabaseConfig(url, data_dir=Path())
    database = create_database(config, schema="public", name="check")
    assert database.connector is not None
    assert database.connector.transport == "auto"
    other = create_database(
        DatabaseConfig(parse_database_url("postgresql://u:p@db.example/app"), data_dir=Path()),
        schema="public",
        name="check",
    )
    assert other.connector is not None
    assert other.connector.transport == "tcp"


async def test_websocket_transport_carries_every_connection(
    hosted_postgres: HostedPostgres, ws_proxy: WebSocketProxy, tmp_path: Path
) -> None:
    # The database port is closed: only the WebSocket can reach the server.
    url = hosted_postgres.url(user=PLAIN_USER, port=_closed_port(), sslmode="disable")
    async with _opened(url, tmp_path, "websocket", ws_proxy.url) as database:
        assert await _server_address(database) == PLAIN_USER
        async with database.engine.connect() as one, database.engine.connect() as two:
            await one.execute(text("SELECT 1"))
            await two.execute(text("SELECT 1"))

    assert ws_proxy.connections == 2
    assert all(path.startswith("/v2") for path in ws_proxy.paths)


async def test_wss_verifies_the_websocket_certificate_as_sslmode_says(
    hosted_postgres: HostedPostgres, wss_proxy: WebSocketProxy, tmp_path: Path
) -> None:
    ca = str(hosted_postgres.certs.ca)
    other_ca = str(hosted_postgres.certs.other_ca)
    url = hosted_postgres.url(user=PLAIN_USER, sslmode="verify-full", sslrootcert=ca)
    async with (
        _opened(url, tmp_path, "websocket", wss_proxy.url) as trusted,
        _opened(url.replace(ca, other_ca), tmp_path, "websocket", wss_proxy.url) as untrusted,
    ):
        assert await _server_address(trusted) == PLAIN_USER
        with pytest.raises(ssl.SSLCertVerificationError):
            await _server_address(untrusted)


@pytest.mark.parametrize(
    "port_closed", [True, False], ids=["switches-when-the-port-is-closed", "keeps-tcp"]
)
async def test_auto_takes_the_websocket_only_when_the_port_is_closed(
    hosted_postgres: HostedPostgres,
    ws_proxy: WebSocketProxy,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    port_closed: bool,
) -> None:
    caplog.set_level(logging.INFO)
    port = _closed_port() if port_closed else None  # None: the cluster's own port
    url = hosted_postgres.url(user=PLAIN_USER, port=port, sslmode="disable")
    async with _opened(url, tmp_path, "auto", ws_proxy.url) as database:
        assert await _server_address(database) == PLAIN_USER
        assert await _server_address(database) == PLAIN_USER

    switches = [r for r in caplog.records if "WebSocket transport" in r.getMessage()]
    # One switch for the whole pool, not one per connection; none while TCP answers.
    assert len(switches) == (1 if port_closed else 0)
    assert (ws_proxy.connections >= 1) if port_closed else (ws_proxy.connections == 0)


async def test_a_websocket_dropped_mid_statement_is_a_503_then_recovers(
    hosted_postgres: HostedPostgres, ws_proxy: WebSocketProxy, tmp_path: Path
) -> None:
    url = hosted_postgres.url(user=PLAIN_USER, port=_closed_port(), sslmode="disable")
    settings = TaskSettings(
        _env_file=None,
        secret_key=SecretStr(SECRET_KEY),
        better_auth_secret=SecretStr(BETTER_AUTH_SECRET),
        database_url=SecretStr(url),
        data_dir=tmp_path,
        task_db_schema=unique_schema("ws"),
        database_transport="websocket",
        database_websocket_url=ws_proxy.url,
    )
    app = create_app(settings)
    headers = bearer(mint(sub="alice"))
    acknowledged: list[int] = []
    async with serving(app, "http://tasks.test") as client:

        async def create(title: str) -> httpx2.Response:
            response = await client.post("/api/alice/tasks", json={"title": title}, headers=headers)
            if response.status_code == 201:
                acknowledged.append(response.json()["id"])
            return response

        assert (await create("before")).status_code == 201
        # Cut once the INSERT has gone to the server, before its answer comes back.
        ws_proxy.drop_after(b"dropped")
        failed = await create("dropped")
        assert ws_proxy.dropped.is_set()
        assert failed.status_code == 503, failed.text
        assert failed.headers.get("retry-after")

        assert (await create("after")).status_code == 201
        listed = await client.get("/api/alice/tasks", headers=headers)

    assert listed.status_code == 200
    body = listed.json()
    items = body["items"] if isinstance(body, dict) else body
    titles = {item["id"]: item["title"] for item in items}
    assert set(acknowledged) <= set(titles)
    # The INSERT reached the server and commits on its own, so "dropped" may be stored: its
    # answer was lost, as a lost COMMIT answer would be, and the client was told 503, never
    # 201. Nothing else is stored, and nothing acknowledged is missing.
    assert set(titles.values()) - {"dropped"} == {"before", "after"}
