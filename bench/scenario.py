"""What a scenario of the benchmark is, and what it is given.

A scenario measures one thing (its `measure` returns the figures kept under its name in
results.json), writes its section of results.md and states its targets. The scenarios, in
the order they run, are listed in bench/scenarios/__init__.py.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.config import MODERATE_CONNECTIONS, THINK_MS
from bench.seeding import User
from bench.wrk import WrkResult, best, run_wrk
from tests.support.stack import Stack


@dataclass
class Results:
    """Everything one run measured: results.json is this, as JSON."""

    machine: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    headline: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Run:
    """What every scenario is given: the stack on PostgreSQL, the load settings, a user with
    20 tasks, and the results so far (later scenarios may read earlier ones)."""

    stack: Stack
    database_url: str
    duration: int
    repeats: int
    reader: User
    results: Results

    @property
    def task_schema(self) -> str:
        return self.stack.env["TASK_DB_SCHEMA"]

    def wrk(
        self, url: str, script: str, *, connections: int, env: dict[str, str] | None = None
    ) -> WrkResult:
        """One wrk run of the run's duration."""
        return run_wrk(url, script, connections=connections, duration=self.duration, env=env)

    def list_tasks(self, url: str, user: User) -> WrkResult:
        """One wrk run of `user` listing at `url` at the moderate load."""
        return self.wrk(
            url,
            "get.lua",
            connections=MODERATE_CONNECTIONS,
            env={"TOKEN": user.token, "THINK_MS": str(THINK_MS)},
        )

    def best_lists(self, points: Mapping[str, tuple[str, User]]) -> dict[str, WrkResult]:
        """Each point's best of `repeats` runs of `list_tasks` (url and user), in order.

        The runs are interleaved, so drift on a shared machine hits every point alike.
        """
        runs: dict[str, list[WrkResult]] = {label: [] for label in points}
        for _ in range(self.repeats):
            for label, (url, user) in points.items():
                runs[label].append(self.list_tasks(url, user))
        return {label: best(results) for label, results in runs.items()}


def _no_targets(results: Results) -> list[dict[str, Any]]:
    return []


@dataclass(frozen=True)
class Scenario:
    """One measurement of the benchmark."""

    name: str
    measure: Callable[[Run], dict[str, Any]]
    section: Callable[[Results], list[str]]
    targets: Callable[[Results], list[dict[str, Any]]] = _no_targets
    # Runs after the shared stack has stopped (it starts processes of its own).
    alone: bool = False


_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


def target(name: str, measured: float, comparison: str, limit: float, unit: str) -> dict[str, Any]:
    """One target of the benchmark, what was measured and whether it is met."""
    return {
        "target": f"{name} {comparison} {limit:g}{unit}",
        "measured": measured,
        "unit": unit,
        "met": _COMPARISONS[comparison](measured, limit),
    }


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator to three places (0 when nothing was measured)."""
    return round(numerator / denominator, 3) if denominator else 0.0


def wrk_row(label: str, row: dict[str, Any]) -> str:
    """A markdown table row of one wrk result."""
    return (
        f"| {label} | {row['requests_per_second']:.0f} | {row['p50_ms']:.2f} |"
        f" {row['p90_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} |"
    )


WRK_TABLE_HEAD = [
    "| req/s | p50 ms | p90 ms | p99 ms | errors |",
    "| ---: | ---: | ---: | ---: | ---: |",
]


def wrk_table(first_column: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    """A markdown table of wrk results, one row per label."""
    return [
        f"| {first_column} {WRK_TABLE_HEAD[0]}",
        f"| --- {WRK_TABLE_HEAD[1]}",
        *[wrk_row(label, row) for label, row in rows.items()],
        "",
    ]
