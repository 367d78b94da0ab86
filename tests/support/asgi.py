"""An app served in-process: its lifespan run, an HTTP client talking to it over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
from asgi_lifespan import LifespanManager
from fastapi import FastAPI


@asynccontextmanager
async def serving(app: FastAPI, base_url: str) -> AsyncIterator[httpx2.AsyncClient]:
    """A client of `app`, started up for the block and shut down after it."""
    transport = httpx2.ASGITransport(app=app)
    async with (
        LifespanManager(app),
        httpx2.AsyncClient(transport=transport, base_url=base_url) as client,
    ):
        yield client
