"""Memory of the stack idle and under load, and the time from `python app.py` to healthy."""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench import stack as bench_stack
from bench.config import SATURATION_CONNECTIONS
from bench.sampling import MemoryPeaks, MemorySummary, memory_line, memory_now
from bench.scenario import Results, Run, Scenario, target
from tests.support.stack import PROGRAMS

START_UP_RUNS = 3
IDLE_RSS_LIMIT_MIB = 250


def measure_idle(run: Run) -> dict[str, Any]:
    memory = memory_now(run.stack.processes())
    print(f"Idle memory on PostgreSQL: {memory_line(memory)}", flush=True)
    run.results.headline["idle_rss_mib_postgresql"] = memory["rss_mib"]["total"]
    return {"memory": memory}


def measure_under_load(run: Run) -> dict[str, Any]:
    """Peak memory of the stack's processes while the gateway is saturated."""
    print("Memory while the gateway is saturated", flush=True)
    with MemoryPeaks(run.stack.processes()) as peaks:
        run.wrk(
            run.stack.base_url + run.reader.tasks_path,
            "get.lua",
            connections=SATURATION_CONNECTIONS,
            env={"TOKEN": run.reader.token},
        )
    print(f"  {memory_line(peaks.summary())}", flush=True)
    return {"memory": peaks.summary()}


def measure_start_up(run: Run) -> dict[str, Any]:
    print("Start-up on SQLite", flush=True)
    times = []
    idle: MemorySummary = {}
    for _ in range(START_UP_RUNS):
        stack = bench_stack.start()
        times.append(stack.healthy_after or 0.0)
        time.sleep(1)
        idle = memory_now(stack.processes())
        stack.stop()
    median = statistics.median(times)
    run.results.headline["start_to_healthy_s_sqlite"] = round(median, 2)
    print(
        f"  python app.py to healthy /health: median {median:.2f} s"
        f" (runs: {', '.join(f'{t:.2f}' for t in times)}); idle {memory_line(idle)}",
        flush=True,
    )
    return {
        "start_to_healthy_s": round(median, 2),
        "start_to_healthy_s_runs": [round(t, 2) for t in times],
        "memory_idle": idle,
    }


def idle_targets(results: Results) -> list[dict[str, Any]]:
    return [
        target(
            "whole stack's RSS idle on PostgreSQL (supervisord and every program)",
            results.headline["idle_rss_mib_postgresql"],
            "<=",
            IDLE_RSS_LIMIT_MIB,
            " MiB",
        )
    ]


def start_up_targets(results: Results) -> list[dict[str, Any]]:
    return [
        target(
            "python app.py to a healthy /health on SQLite, median",
            results.headline["start_to_healthy_s_sqlite"],
            "<=",
            5,
            " s",
        )
    ]


def _no_section(results: Results) -> list[str]:
    return []


def section(results: Results) -> list[str]:
    """Start-up, and the memory of every phase that recorded some."""
    data = results.scenarios["start_up"]
    runs = data["start_to_healthy_s_runs"]
    phases = {
        "idle, PostgreSQL": ("idle_memory", "memory"),
        "GET saturation, PostgreSQL": ("memory_under_load", "memory"),
        "logins at full rate, PostgreSQL": ("logins", "memory_peak"),
        "idle, SQLite": ("start_up", "memory_idle"),
    }
    memory = {
        phase: results.scenarios[scenario][key]
        for phase, (scenario, key) in phases.items()
        if scenario in results.scenarios
    }
    return [
        "## Footprint",
        "",
        "Start-up, `python app.py` to a healthy `/health` on SQLite: median"
        f" {data['start_to_healthy_s']} s of {len(runs)} runs"
        f" ({', '.join(f'{t} s' for t in runs)}).",
        "",
        "Memory in MiB. RSS counts shared pages (the interpreter, libraries) once in every",
        "process; PSS divides them between the processes sharing them, so its total is the",
        "stack's real share of memory. Under load: the highest value sampled every 0.5 s",
        "(the total is the highest sum at one instant). The phases run in this order on one",
        "stack, so memory a process keeps after a phase shows in the later ones too.",
        "",
        *_memory_table(memory),
        "",
    ]


def _memory_table(phases: dict[str, MemorySummary]) -> list[str]:
    names = ["supervisord", *PROGRAMS, "total"]
    lines = [f"| MiB | {' | '.join(names)} |", f"| --- |{' ---: |' * len(names)}"]
    for phase, memory in phases.items():
        for measure in ("rss", "pss"):
            values = memory[f"{measure}_mib"]
            cells = ["-" if values.get(name) is None else str(values[name]) for name in names]
            lines.append(f"| {phase}, {measure.upper()} | {' | '.join(cells)} |")
    return lines


IDLE = Scenario("idle_memory", measure_idle, _no_section, idle_targets)
UNDER_LOAD = Scenario("memory_under_load", measure_under_load, _no_section)
START_UP = Scenario("start_up", measure_start_up, section, start_up_targets, alone=True)
