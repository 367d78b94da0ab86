"""Log lines reach stdout whole and in order, one write per turn of the event loop."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections.abc import Iterator

import pytest

from shared.logging import configure_logging

logger = logging.getLogger("tests.log_writes")


class WriteRecorder(io.StringIO):
    """A text stream that keeps each write it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def stdout(monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteRecorder]:
    recorder = WriteRecorder()
    monkeypatch.setattr(sys, "stdout", recorder)
    configure_logging("INFO", "unit")
    yield recorder
    for handler in list(logging.getLogger().handlers):
        if getattr(handler, "stream", None) is recorder:
            logging.getLogger().removeHandler(handler)


async def test_the_lines_of_one_turn_are_written_together_at_its_end(
    stdout: WriteRecorder,
) -> None:
    for number in range(3):
        logger.info("line %d", number)
    assert stdout.writes == []

    await asyncio.sleep(0)

    assert len(stdout.writes) == 1
    assert [line.rsplit(": ", 1)[1] for line in stdout.writes[0].splitlines()] == [
        "line 0",
        "line 1",
        "line 2",
    ]


def test_a_line_logged_where_no_loop_runs_is_written_at_once(stdout: WriteRecorder) -> None:
    logger.info("outside a loop")

    assert len(stdout.writes) == 1
    assert stdout.writes[0].endswith("tests.log_writes: outside a loop\n")


async def test_a_line_from_another_thread_comes_after_those_waiting(
    stdout: WriteRecorder,
) -> None:
    logger.info("first, in the loop")

    await asyncio.to_thread(logger.info, "second, in a thread")

    text = "".join(stdout.writes)
    assert text.index("first, in the loop") < text.index("second, in a thread")


async def test_flushing_at_exit_writes_what_waits(stdout: WriteRecorder) -> None:
    logger.info("logged just before the process ends")

    # What logging.shutdown does for every handler when the interpreter exits.
    for handler in logging.getLogger().handlers:
        handler.flush()

    assert "logged just before the process ends" in "".join(stdout.writes)


async def test_each_new_loop_gets_its_lines_written(stdout: WriteRecorder) -> None:
    # A loop that ends before the end of its turn leaves no flush behind for the next one.
    def in_a_loop_of_its_own() -> None:
        async def log() -> None:
            logger.info("in a loop that closes at once")

        asyncio.run(log())
        asyncio.run(log())

    await asyncio.to_thread(in_a_loop_of_its_own)
    await asyncio.sleep(0)

    assert "".join(stdout.writes).count("in a loop that closes at once") == 2
