"""Creating tasks through the gateway, for one user and for ten at once."""

from __future__ import annotations

from functools import partial
from typing import Any

from bench.config import WRITE_CONNECTIONS
from bench.scenario import Results, Run, Scenario, wrk_table
from bench.seeding import register
from bench.wrk import best, report

NAME = "writes"


def measure(run: Run) -> dict[str, Any]:
    print("Writes: POST a task through the gateway", flush=True)
    base = run.stack.base_url
    one = register(base, "writer")
    many = [register(base, f"writer{n}") for n in range(10)]
    data: dict[str, Any] = {"wrk": {}}
    # The same connections for both, so the rows differ only in how many users write.
    for label, users in (
        (f"1 user, {WRITE_CONNECTIONS} connections", [one]),
        (f"10 users at once, {WRITE_CONNECTIONS} connections", many),
    ):
        spec = ";".join(f"{user.token}|{user.tasks_path}" for user in users)
        once = partial(run.wrk, base + "/", "post.lua", connections=WRITE_CONNECTIONS)
        report(label, best([once(env={"USERS": spec}) for _ in range(run.repeats)]), data["wrk"])
    return data


def section(results: Results) -> list[str]:
    return [
        "## Writes (`POST /api/{user_id}/tasks` through the gateway, PostgreSQL)",
        "",
        *wrk_table("writers", results.scenarios[NAME]["wrk"]),
    ]


SCENARIO = Scenario(NAME, measure, section)
