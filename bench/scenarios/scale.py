"""List latency by the user's task count, and the plans of the statements behind it."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.plans import explain_lists, plans_section
from bench.scenario import Results, Run, Scenario, ratio, target, wrk_table
from bench.seeding import User, register, seed_tasks, settle
from bench.wrk import report

NAME = "scale"
SIZES = (100, 10_000, 100_000)
QUERIES = (
    "limit=50",
    "limit=50&status=pending",
    # Its total sums the kept counts of one priority (two rows), like the status filter.
    "limit=50&priority=high",
    # A non-default order, read through its own index like every sort key.
    "limit=50&sort=title&order=asc",
)


def _ratio_key(query: str) -> str:
    return f"list_{SIZES[-1] // 1000}k_vs_{SIZES[0]}_p50_ratio ({query})"


def measure(run: Run) -> dict[str, Any]:
    print("List latency by the user's task count (limit=50, through the gateway)", flush=True)
    stack = run.stack
    users: dict[int, User] = {}
    for count in SIZES:
        users[count] = register(stack.base_url, f"scale{count}")
        asyncio.run(seed_tasks(run.database_url, run.task_schema, users[count].id, count))
    asyncio.run(settle(run.database_url, run.task_schema))
    points = {
        f"{count} tasks, ?{query}": (f"{stack.base_url}{user.tasks_path}?{query}", user)
        for count, user in users.items()
        for query in QUERIES
    }
    data: dict[str, Any] = {"wrk": {}}
    for label, result in run.best_lists(points).items():
        report(label, result, data["wrk"])
    for query in QUERIES:
        small = data["wrk"][f"{SIZES[0]} tasks, ?{query}"]["p50_ms"]
        large = data["wrk"][f"{SIZES[-1]} tasks, ?{query}"]["p50_ms"]
        run.results.headline[_ratio_key(query)] = ratio(large, small)
    # After the runs, so the plans meet the same warm cache as the requests measured.
    data["query_plans"] = asyncio.run(
        explain_lists(run.database_url, run.task_schema, users[SIZES[-1]].id)
    )
    for label, plan in data["query_plans"].items():
        print(
            f"  EXPLAIN {label:<42} {plan['execution_ms']:7.3f} ms  {' > '.join(plan['nodes'])}",
            flush=True,
        )
    return data


def targets(results: Results) -> list[dict[str, Any]]:
    return [
        target(
            f"p50 at {SIZES[-1]:,} tasks / p50 at {SIZES[0]} tasks, ?{query}",
            results.headline[_ratio_key(query)],
            "<=",
            1.5,
            "x",
        )
        for query in QUERIES
    ]


def section(results: Results) -> list[str]:
    data = results.scenarios[NAME]
    return [
        "## List latency by data size (through the gateway, moderate load)",
        "",
        *wrk_table("user's tasks, query", data["wrk"]),
        *plans_section(data["query_plans"], SIZES[-1]),
    ]


SCENARIO = Scenario(NAME, measure, section, targets)
