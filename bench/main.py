"""Benchmarks of the stack, side by side on this machine.

    python bench/run.py [--duration 10] [--repeats 2] [--output DIR] [--only NAME ...]

Starts what it needs on free loopback ports (the stack with `python app.py` on PostgreSQL,
nginx beside it), drives it with wrk, prints a table and writes results.md and results.json:
into bench/ for a full run, into bench/.work/quick/ for a shorter one (so a quick look never
replaces the committed results), or into --output. Needs wrk and nginx (it says which are
missing; it installs nothing) and a PostgreSQL server (BENCH_DATABASE_URL, default the local
one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

from bench import stack as bench_stack
from bench.config import (
    BENCH,
    DEFAULT_DATABASE_URL,
    FULL_DURATION_S,
    FULL_REPEATS,
    QUICK_OUTPUT,
    WORK,
    is_full_run,
)
from bench.machine import machine_info
from bench.report import print_targets, write_reports
from bench.scenario import Results, Run
from bench.scenarios import SCENARIOS
from bench.seeding import register, seed_tasks
from bench.servers import missing_tools


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=int, default=FULL_DURATION_S, help="seconds per point")
    parser.add_argument("--repeats", type=int, default=FULL_REPEATS, help="runs per point")
    parser.add_argument(
        "--output",
        type=Path,
        help="directory for results.md and results.json (default: bench/ for a full run with"
        " every scenario, bench/.work/quick/ otherwise)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[scenario.name for scenario in SCENARIOS],
        help="run only these scenarios",
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    missing = missing_tools()
    if missing:
        sys.exit(f"Install first: {', '.join(missing)} (e.g. apt-get install -y wrk nginx-light)")
    scenarios = [s for s in SCENARIOS if args.only is None or s.name in args.only]
    complete = args.only is None and is_full_run(args.duration, args.repeats)
    output: Path = args.output or (BENCH if complete else QUICK_OUTPUT)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)

    results = Results(
        machine=machine_info(args.database_url),
        settings={"duration_s": args.duration, "repeats": args.repeats},
    )
    suffix = uuid.uuid4().hex[:8]
    stack = bench_stack.start(
        DATABASE_URL=args.database_url,
        AUTH_DB_SCHEMA=f"bench_auth_{suffix}",
        TASK_DB_SCHEMA=f"bench_tasks_{suffix}",
    )
    try:
        reader = register(stack.base_url, "reader")
        asyncio.run(seed_tasks(args.database_url, stack.env["TASK_DB_SCHEMA"], reader.id, count=20))
        run = Run(stack, args.database_url, args.duration, args.repeats, reader, results)
        for scenario in scenarios:
            if not scenario.alone:
                results.scenarios[scenario.name] = scenario.measure(run)
    finally:
        stack.stop()
        asyncio.run(stack.drop_schemas(args.database_url))
    for scenario in scenarios:
        if scenario.alone:
            results.scenarios[scenario.name] = scenario.measure(run)
    # How busy the machine was around the run: figures from a shared machine need it.
    results.machine["load_average_at_end"] = " ".join(f"{load:.2f}" for load in os.getloadavg())
    results.targets = [row for scenario in scenarios for row in scenario.targets(results)]
    print_targets(results.targets)
    write_reports(results, scenarios, output)
    print(f"\nWrote {output / 'results.md'} and {output / 'results.json'}")
    print(json.dumps(results.headline, indent=2))
