"""When log lines reach stdout: together, a moment after the first, from the event loop; at
once from elsewhere."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

import pytest

from shared.logging import FLUSH_INTERVAL_SECONDS, MAX_WAITING_LINES, configure_logging

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

logger = logging.getLogger("tests.log_output")


@pytest.fixture
def piped_stdout(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[IO[str], int]]:
    """stdout as a buffered pipe (as under supervisord), and the pipe's reading end."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    stream = open(write_end, "w", buffering=8192)  # noqa: SIM115 (closed below)
    monkeypatch.setattr(sys, "stdout", stream)
    configure_logging("INFO", "unit")
    yield stream, read_end
    configure_logging("INFO", "unit")  # back to the real stdout, for the tests after this
    stream.close()
    os.close(read_end)


async def _past_the_interval() -> None:
    # The flush's timer was set first and ends first: it has run when this sleep ends.
    await asyncio.sleep(FLUSH_INTERVAL_SECONDS * 2)


def _written(read_end: int) -> str:
    try:
        return os.read(read_end, 65536).decode()
    except BlockingIOError:
        return ""


def test_without_a_running_loop_each_line_is_written_at_once(
    piped_stdout: tuple[IO[str], int],
) -> None:
    _stream, read_end = piped_stdout
    logger.info("first")
    assert "tests.log_output: first" in _written(read_end)


async def test_lines_logged_in_the_loop_are_written_together_after_the_interval(
    piped_stdout: tuple[IO[str], int],
) -> None:
    _stream, read_end = piped_stdout
    for number in range(3):
        logger.info("line %d", number)
    await asyncio.sleep(0)
    assert _written(read_end) == ""  # the next turn: still nothing written

    await _past_the_interval()

    written = _written(read_end)
    assert [line.rsplit(": ", 1)[1] for line in written.splitlines()] == [
        "line 0",
        "line 1",
        "line 2",
    ]


async def test_a_line_from_another_thread_is_written_at_once(
    piped_stdout: tuple[IO[str], int],
) -> None:
    _stream, read_end = piped_stdout
    thread = threading.Thread(target=logger.info, args=("from a thread",))
    thread.start()
    thread.join()

    assert "from a thread" in _written(read_end)


async def test_a_new_loop_gets_its_lines_written_after_one_closed_before_its_turn(
    piped_stdout: tuple[IO[str], int],
) -> None:
    _stream, read_end = piped_stdout

    def log_in_a_loop_that_stops_at_once() -> None:
        loop = asyncio.new_event_loop()
        loop.call_soon(logger.info, "left in a closed loop")
        loop.call_soon(loop.stop)  # in the same turn: the flush's turn never comes
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=log_in_a_loop_that_stops_at_once)
    thread.start()
    thread.join()
    logger.info("in the running loop")
    await _past_the_interval()

    written = _written(read_end)
    assert "left in a closed loop" in written
    assert "in the running loop" in written


class _CountedFile(io.FileIO):
    """A file whose writes (each a system call) are counted."""

    writes = 0

    def write(self, data: ReadableBuffer) -> int:
        self.writes += 1
        return super().write(data)


async def test_lines_of_one_interval_are_one_write_where_stdout_writes_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # stdout as PYTHONUNBUFFERED (the image's setting) makes it: each write is a system call.
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    file = _CountedFile(write_end, "w")
    stream = io.TextIOWrapper(io.BufferedWriter(file), write_through=True)
    monkeypatch.setattr(sys, "stdout", stream)
    configure_logging("INFO", "unit")
    try:
        for number in range(3):
            logger.info("unbuffered %d", number)
            await asyncio.sleep(0)  # each in a turn of its own
        await _past_the_interval()
        written = _written(read_end)
    finally:
        configure_logging("INFO", "unit")
        stream.close()
        os.close(read_end)

    assert written.count("unbuffered") == 3
    assert file.writes == 1


async def test_a_burst_of_lines_is_written_without_waiting_for_the_interval(
    piped_stdout: tuple[IO[str], int],
) -> None:
    _stream, read_end = piped_stdout
    for number in range(MAX_WAITING_LINES):
        logger.info("burst %d", number)

    written = b""
    while chunk := _written(read_end).encode():
        written += chunk
    assert written.decode().count("burst") == MAX_WAITING_LINES


def _flush_every_handler() -> None:
    # What logging.shutdown does for every handler when the interpreter exits.
    for handler in logging.getLogger().handlers:
        handler.flush()


async def test_flushing_at_exit_writes_what_waits(
    piped_stdout: tuple[IO[str], int],
) -> None:
    _stream, read_end = piped_stdout
    logger.info("logged just before the process ends")

    _flush_every_handler()

    assert "logged just before the process ends" in _written(read_end)


async def test_a_closed_stdout_fails_the_timer_quietly_and_exits_cleanly(
    piped_stdout: tuple[IO[str], int], capsys: pytest.CaptureFixture[str]
) -> None:
    stream, _read_end = piped_stdout
    logger.info("waiting when stdout closes")
    stream.close()
    await _past_the_interval()  # the timer's write fails: reported, not raised
    logger.info("waiting at exit")

    # The ValueError logging.shutdown ignores, as StreamHandler raises it on a closed stream.
    with pytest.raises(ValueError, match="closed file"):
        _flush_every_handler()
    assert "ValueError: I/O operation on closed file" in capsys.readouterr().err
