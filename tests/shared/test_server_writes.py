"""The server's writes: an answer whose body follows its start goes out in one system call,
and a streamed answer's head does not wait for its body."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from starlette.types import Receive, Scope, Send

from shared.server import Protocol
from tests.support.http_server import free_port, serve

ROOT = Path(__file__).resolve().parents[2]
BODY = b'{"ok":true}'
REQUEST = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n"


async def answer(scope: Scope, receive: Receive, send: Send) -> None:
    """An answer whose body follows its start at once, as nearly every answer's does."""
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


@pytest.fixture
def server() -> Iterator[tuple[int, int]]:
    """`answer` served by uvicorn with the Protocol in a process of its own: (pid, port)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "tests.shared.test_server_writes:answer"]
    options = ["--http", "shared.server:Protocol", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen([*command, *options], cwd=ROOT)  # noqa: S603 (fixed command)
    try:
        deadline = time.monotonic() + 30
        while not _listens(port):
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not listen in time"
            time.sleep(0.1)
        yield process.pid, port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _write_calls(pid: int) -> int:
    """Write system calls a process has made so far (Linux's per-process I/O counters; uvloop
    writes sockets with write(2))."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, _, value = line.partition(": ")
        if name == "syscw":
            return int(value)
    raise AssertionError("no syscw in /proc/<pid>/io")


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head + await asyncio.wait_for(reader.readexactly(len(BODY)), 5)


async def test_an_answer_with_its_body_at_once_is_one_write(server: tuple[int, int]) -> None:
    pid, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # The first exchange opens the connection; the second is counted alone.
        writer.write(REQUEST)
        await _read_answer(reader)
        before = _write_calls(pid)
        writer.write(REQUEST)
        answered = await _read_answer(reader)
        after = _write_calls(pid)
    finally:
        writer.close()

    assert answered.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answered.endswith(b"\r\n\r\n" + BODY)
    assert after - before == 1


async def test_a_streamed_answer_sends_its_head_before_its_body_comes() -> None:
    body_may_come = asyncio.Event()

    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await body_may_come.wait()
        await send({"type": "http.response.body", "body": b"late"})

    async with serve(stream, http=Protocol) as url:
        address = urlsplit(url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        try:
            writer.write(REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            body_may_come.set()
            chunked = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
        finally:
            writer.close()

    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in head
    assert chunked == b"4\r\nlate\r\n0\r\n\r\n"
