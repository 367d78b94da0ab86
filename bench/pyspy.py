"""Where a process of the stack spends its time under load: py-spy while wrk runs.

    python -m bench.pyspy tasks|gateway|proxy [--duration 15] [--top 30]

Starts the stack on PostgreSQL, gives a user 20 tasks, saturates the 20-task list (straight
at the task service for `tasks`, through the gateway for `gateway`) and samples the process
with py-spy meanwhile. `proxy` samples the gateway of the proxy scenario instead: a stack
on SQLite whose task routes go to nginx serving a static 2 KB JSON file. Prints the
functions holding the most samples, including what they call, and keeps the collapsed
stacks (for a flame graph) in bench/.work/. Needs py-spy (requirements-dev.txt) and
permission to read the process (root, or ptrace allowed).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path

from bench import stack as bench_stack
from bench.config import DEFAULT_DATABASE_URL, SATURATION_CONNECTIONS, WORK
from bench.scenarios.proxy import PATH as PROXIED_PATH
from bench.scenarios.proxy import static_body
from bench.seeding import register, seed_tasks
from bench.servers import static_upstream
from bench.wrk import run_wrk

_FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def read_collapsed(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """Samples per function including callees, samples per leaf function, and the total."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [_name(frame) for frame in stack.split(";")]
        # A recursive function counts once per sample.
        for frame in set(frames):
            inclusive[frame] += count
        leaf[frames[-1]] += count
    return inclusive, leaf, total


def _name(frame: str) -> str:
    """`function (path/to/module.py:12)` -> `function (module path from site-packages)`."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['function']} ({file.removeprefix('/work/').lstrip('/')})"


def _record(pid: int, url: str, token: str, duration: int, output: Path) -> None:
    """py-spy on `pid` while wrk saturates `url`."""

    def load() -> None:
        run_wrk(
            url,
            "get.lua",
            connections=SATURATION_CONNECTIONS,
            duration=duration + 4,
            env={"TOKEN": token},
        )

    wrk = threading.Thread(target=load)
    wrk.start()
    # Sampling starts once the load has, and stops before it does.
    threading.Event().wait(2)
    record = ["py-spy", "record", "-p", str(pid), "-d", str(duration), "-r", "200"]
    subprocess.run([*record, "-f", "raw", "-o", str(output)], check=True, capture_output=True)
    wrk.join()


def profile_proxy(duration: int) -> Path:
    """The gateway proxying the static upstream, as the proxy scenario runs it."""
    WORK.mkdir(parents=True, exist_ok=True)
    body = WORK / "static" / "tasks.json"
    body.parent.mkdir(parents=True, exist_ok=True)
    body.write_bytes(static_body())
    output = WORK / f"pyspy-proxy-{uuid.uuid4().hex[:8]}.txt"
    with static_upstream(body) as upstream:
        proxied = bench_stack.start(TASK_SERVICE_URL=upstream.url)
        try:
            pid = proxied.processes()["gateway"]
            _record(pid, proxied.base_url + PROXIED_PATH, "not-checked", duration, output)
        finally:
            proxied.stop()
    return output


def profile(target: str, duration: int, database_url: str) -> Path:
    if target == "proxy":
        return profile_proxy(duration)
    suffix = uuid.uuid4().hex[:8]
    WORK.mkdir(parents=True, exist_ok=True)
    stack = bench_stack.start(
        DATABASE_URL=database_url,
        AUTH_DB_SCHEMA=f"bench_auth_{suffix}",
        TASK_DB_SCHEMA=f"bench_tasks_{suffix}",
    )
    output = WORK / f"pyspy-{target}-{suffix}.txt"
    try:
        user = register(stack.base_url, "profiled")
        asyncio.run(seed_tasks(database_url, stack.env["TASK_DB_SCHEMA"], user.id, 20))
        base = stack.task_service_url if target == "tasks" else stack.base_url
        _record(stack.processes()[target], base + user.tasks_path, user.token, duration, output)
    finally:
        stack.stop()
        asyncio.run(stack.drop_schemas(database_url))
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("target", choices=["tasks", "gateway", "proxy"])
    parser.add_argument("--duration", type=int, default=15, help="seconds sampled")
    parser.add_argument("--top", type=int, default=30, help="functions listed")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--read", type=Path, help="summarise collapsed stacks already recorded")
    args = parser.parse_args()
    path = args.read or profile(args.target, args.duration, args.database_url)
    inclusive, leaf, total = read_collapsed(path)
    if not total:
        sys.exit(f"no samples in {path}")
    print(f"{total} samples in {path}\n\nincluding callees:")
    for name, count in inclusive.most_common(args.top):
        print(f"  {100 * count / total:5.1f} %  {name}")
    print("\nitself:")
    for name, count in leaf.most_common(args.top):
        print(f"  {100 * count / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
