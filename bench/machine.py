"""The machine and the code a run measures."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
from datetime import UTC, datetime
from typing import Any

import asyncpg
import psutil

from bench.config import ROOT


def code_version() -> dict[str, Any]:
    """The commit measured, and whether the working tree differed from it."""

    def git(*arguments: str) -> str:
        done = subprocess.run(
            ["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    try:
        return {
            "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain")),
        }
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown (not a git checkout)", "git_dirty": None}


def _version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return "not installed"
    return (done.stdout + done.stderr).strip().splitlines()[0]


def machine_info(database_url: str) -> dict[str, Any]:
    """CPU, memory, OS and versions of what the run depends on, with the date and commit."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    async def server_version() -> str:
        connection = await asyncpg.connect(database_url)
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{psutil.virtual_memory().total / 1024**3:.1f} GiB",
        "load_average_at_start": " ".join(f"{load:.2f}" for load in os.getloadavg()),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": asyncio.run(server_version()),
        "nginx": _version(["nginx", "-v"]),
        "wrk": _version(["wrk", "-v"]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        **code_version(),
    }
