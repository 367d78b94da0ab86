"""Where the benchmark keeps its files, and the loads it applies."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / ".work"
QUICK_OUTPUT = WORK / "quick"
LUA = BENCH / "lua"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
SECRET_KEY = "benchmark-secret-key-0123456789abcdefghijklmnop"
PASSWORD = "benchmark password"
# A full run: what the committed results are measured with.
FULL_DURATION_S = 10
FULL_REPEATS = 2
# Moderate load: two connections, each pausing this long between requests.
MODERATE_CONNECTIONS = 2
THINK_MS = 5
SATURATION_CONNECTIONS = 32
WRITE_CONNECTIONS = 10


def is_full_run(duration_s: int, repeats: int) -> bool:
    """Whether a run is at least as long as the one the committed results come from."""
    return duration_s >= FULL_DURATION_S and repeats >= FULL_REPEATS
