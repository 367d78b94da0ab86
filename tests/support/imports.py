"""Which modules a fresh interpreter loads: how tests hold a process to what it imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(*arguments: str, stdin: bytes = b"") -> set[str]:
    """Every module `python -X importtime <arguments>` loads, run from the project's root
    with `stdin` as its input (it must exit 0), read from the interpreter's report."""
    result = subprocess.run(  # noqa: S603 (the interpreter running the tests)
        [sys.executable, "-X", "importtime", *arguments],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.decode().splitlines()
        # The report's first line is its heading ("self [us] | cumulative | ...").
        if line.startswith("import time:") and "[us]" not in line
    }
