"""HTTP/1.1 requests sent exactly as written: no path normalization, no added headers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(
    url: str, method: str, target: str, headers: Sequence[tuple[str, str]] = ()
) -> RawResponse:
    """Send one bodiless request to the server at `url` with only Host, Connection and
    `headers`, and read the whole answer."""
    address = urlsplit(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method=method,
        target=target,
        headers=[("host", address.netloc), ("connection", "close"), *headers],
    )
    try:
        for outgoing in (request, h11.EndOfMessage()):
            writer.write(connection.send(outgoing) or b"")
        await writer.drain()
        status, received, body = 0, dict[str, str](), b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                received = {name.decode(): value.decode() for name, value in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return RawResponse(status, received, body)
    finally:
        writer.close()
        await writer.wait_closed()
