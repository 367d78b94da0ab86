"""The gateway's floor in the benchmark relays what the upstream answers."""

from __future__ import annotations

import httpx2
import pytest
from asgi_lifespan import LifespanManager

from bench import proxy_reference
from bench.scenarios.proxy import static_body
from bench.servers import uvicorn_app


async def test_the_proxy_reference_relays_the_upstreams_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = static_body()
    with uvicorn_app("static", "bench.scenarios.proxy:static_app", {}) as upstream:
        monkeypatch.setenv("PROXY_REFERENCE_UPSTREAM", upstream.url)
        async with LifespanManager(proxy_reference.app):
            transport = httpx2.ASGITransport(app=proxy_reference.app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://bench") as client:
                relayed = await client.get("/api/static-user/tasks")

    assert relayed.status_code == 200
    assert relayed.content == body
