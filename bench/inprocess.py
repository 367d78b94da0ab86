"""A process's own cost per request, with no server and no load generator.

    python -m bench.inprocess [--operation list|create|toggle|proxy] [--requests 1500]

`list`, `create` and `toggle` build the task service's app on PostgreSQL (BENCH_DATABASE_URL,
default the local one, in a schema of its own), give a user 20 tasks, and call the ASGI app
directly, one request after another. `proxy` does the same with the gateway's app, whose
task routes go to a static 2 KB JSON upstream in a process of its own (the proxy scenario's
body, served by uvicorn). Each prints the CPU time per request (the best of five rounds)
and the Python function calls per request. The call count does not depend on what else the
machine is doing, so it compares two commits fairly on a busy machine, where wrk's figures
drift; CPU time confirms the direction. Database and upstream round trips are real, so
their client-side work is counted; the server (uvicorn) and the access log are not.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import jwt
import orjson
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from starlette.types import ASGIApp, Message

from bench.config import DEFAULT_DATABASE_URL, SECRET_KEY
from bench.scenarios.proxy import PATH as PROXIED_PATH
from bench.servers import uvicorn_app
from gateway.app import create_app as create_gateway
from gateway.settings import GatewaySettings
from shared.server import CONNECTION_EXTENSION, Connection
from task_service.app import create_app
from task_service.settings import TaskSettings

ROUNDS = 5
PROFILED_REQUESTS = 200


async def call(
    app: ASGIApp, method: str, path: str, token: str, body: bytes = b""
) -> tuple[int, bytes]:
    """One request straight into the app: the response's status and body."""
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())]
    if body:
        headers.append((b"content-type", b"application/json"))
    messages: list[Message] = []
    received = False

    async def receive() -> Message:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        messages.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        # What the processes' server (shared.server.Protocol) adds to every request.
        "extensions": {CONNECTION_EXTENSION: {"connection": Connection()}},
    }
    await app(scope, receive, send)
    return messages[0]["status"], b"".join(m.get("body", b"") for m in messages[1:])


async def measure(operation: str, requests: int, database_url: str) -> tuple[float, float]:
    """CPU milliseconds and Python calls per request of `operation`."""
    if operation == "proxy":
        return await measure_proxy(requests)
    schema = f"bench_inprocess_{uuid.uuid4().hex[:8]}"
    settings = TaskSettings(
        _env_file=None,
        database_url=SecretStr(database_url),
        secret_key=SecretStr(SECRET_KEY),
        task_db_schema=schema,
        log_level="WARNING",
    )
    try:
        return await _measure(create_app(settings), operation, requests)
    finally:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()


async def _measure(app: ASGIApp, operation: str, requests: int) -> tuple[float, float]:
    user = str(uuid.uuid4())
    claims = {"sub": user, "exp": int(time.time()) + 3600, "type": "access"}
    token = jwt.encode(claims, SECRET_KEY, algorithm="HS256")
    tasks = f"/api/{user}/tasks"
    async with LifespanManager(app):
        created = []
        for number in range(20):
            body = orjson.dumps({"title": f"Task {number}", "tags": ["bench"]})
            status, answer = await call(app, "POST", tasks, token, body)
            assert status == 201, answer
            created.append(orjson.loads(answer)["id"])
        first = created[0]

        requests_of: dict[str, Callable[[], Awaitable[tuple[int, bytes]]]] = {
            "list": lambda: call(app, "GET", tasks, token),
            "create": lambda: call(app, "POST", tasks, token, b'{"title":"New","tags":["a"]}'),
            "toggle": lambda: call(app, "PATCH", f"{tasks}/{first}/complete", token),
        }
        return await _cost(requests_of[operation], requests)


async def measure_proxy(requests: int) -> tuple[float, float]:
    """CPU milliseconds and Python calls per request the gateway spends proxying a GET."""
    with uvicorn_app("static", "bench.scenarios.proxy:static_app", {}) as upstream:
        settings = GatewaySettings(
            _env_file=None,
            auth_service_url=upstream.url,
            task_service_url=upstream.url,
            log_level="WARNING",
        )
        app = create_gateway(settings)

        async def one() -> tuple[int, bytes]:
            return await call(app, "GET", PROXIED_PATH, "not-checked")

        async with LifespanManager(app):
            status, answer = await one()
            assert status == 200, answer
            return await _cost(one, requests)


async def _cost(
    one: Callable[[], Awaitable[tuple[int, bytes]]], requests: int
) -> tuple[float, float]:
    """The best round's CPU milliseconds per call of `one`, and its Python calls per call."""
    for _ in range(requests // ROUNDS):  # warm caches, pools and statements first
        await one()
    best = float("inf")
    for _ in range(ROUNDS):
        started_at = time.process_time()
        for _ in range(requests // ROUNDS):
            await one()
        best = min(best, (time.process_time() - started_at) / (requests // ROUNDS))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(PROFILED_REQUESTS):
        await one()
    profiler.disable()
    calls = pstats.Stats(profiler).total_calls / PROFILED_REQUESTS  # type: ignore[attr-defined]
    return best * 1000, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--operation", choices=["list", "create", "toggle", "proxy"], default="list"
    )
    parser.add_argument("--requests", type=int, default=1500, help="requests per measurement")
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    args = parser.parse_args()
    cpu_ms, calls = asyncio.run(measure(args.operation, args.requests, args.database_url))
    print(f"{args.operation}: {cpu_ms:.3f} ms of CPU and {calls:.0f} Python calls per request")


if __name__ == "__main__":
    main()
