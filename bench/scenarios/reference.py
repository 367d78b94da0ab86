"""The task service against the reference (bench/reference.py): same SQL, same JSON.

The list, create and toggle, each served by the task service directly and by the reference
in turn at saturation, with the CPU time each process spends per request: the ratio of the
two is what the service's own machinery costs.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2

from bench.config import SATURATION_CONNECTIONS, WRITE_CONNECTIONS
from bench.sampling import CpuMeter
from bench.scenario import Results, Run, Scenario, ratio, target, wrk_table
from bench.seeding import register, seed_tasks
from bench.servers import uvicorn_app
from bench.wrk import WrkResult, best, report

NAME = "reference"
SYSTEMS = ("task_service", "reference")
LIST_CPU_LIMIT_MS = 0.45
RATIO_LIMIT = 3


def measure(run: Run) -> dict[str, Any]:
    print("Task service against the reference: list, create, toggle", flush=True)
    stack = run.stack
    writer = register(stack.base_url, "reference-writer")
    toggler = register(stack.base_url, "reference-toggler")
    asyncio.run(seed_tasks(run.database_url, run.task_schema, toggler.id, 20))
    listed = httpx2.get(
        stack.task_service_url + toggler.tasks_path,
        headers={"Authorization": f"Bearer {toggler.token}"},
        timeout=10,
    ).json()
    ids = ",".join(str(task["id"]) for task in listed)
    # (script, connections, user, extra environment) of each operation.
    operations = {
        "list": ("get.lua", SATURATION_CONNECTIONS, run.reader, {}),
        "create": ("post.lua", WRITE_CONNECTIONS, writer, {}),
        "toggle": ("toggle.lua", WRITE_CONNECTIONS, toggler, {"IDS": ids}),
    }
    env = {"REFERENCE_DATABASE_URL": run.database_url, "REFERENCE_SCHEMA": run.task_schema}
    data: dict[str, Any] = {"wrk": {}, "cpu_ms_per_request": {}}
    with uvicorn_app("reference", "bench.reference:app", env) as reference:
        bases = {"task_service": stack.task_service_url, "reference": reference.url}
        pids = {"task_service": stack.processes()["tasks"], "reference": reference.pid}
        for operation, (script, connections, user, extra) in operations.items():
            runs: dict[str, list[WrkResult]] = {system: [] for system in SYSTEMS}
            cpu = dict.fromkeys(SYSTEMS, 0.0)
            requests = dict.fromkeys(SYSTEMS, 0)
            # Interleaved, so drift on a shared machine hits both alike.
            for _ in range(run.repeats):
                for system in SYSTEMS:
                    wrk_env = {
                        "TOKEN": user.token,
                        "USERS": f"{user.token}|{user.tasks_path}",
                        "PREFIX": user.tasks_path,
                        **extra,
                    }
                    url = bases[system] + (user.tasks_path if script == "get.lua" else "/")
                    with CpuMeter({system: pids[system]}) as meter:
                        result = run.wrk(url, script, connections=connections, env=wrk_env)
                    runs[system].append(result)
                    cpu[system] += meter.seconds[system]
                    requests[system] += result.requests
            for system in SYSTEMS:
                report(f"{operation}/{system}", best(runs[system]), data["wrk"])
            per_request = {
                system: round(cpu[system] * 1000 / max(requests[system], 1), 3)
                for system in SYSTEMS
            }
            per_request["ratio"] = ratio(per_request["task_service"], per_request["reference"])
            data["cpu_ms_per_request"][operation] = per_request
            print(
                f"  {operation:<7} CPU per request: task service {per_request['task_service']:.3f}"
                f" ms, reference {per_request['reference']:.3f} ms ({per_request['ratio']}x)",
                flush=True,
            )
    headline = run.results.headline
    for operation, row in data["cpu_ms_per_request"].items():
        headline[f"task_service_cpu_ms_{operation}"] = row["task_service"]
        headline[f"task_service_vs_reference_cpu_{operation}"] = row["ratio"]
    headline["task_service_vs_reference_req_s_list"] = ratio(
        data["wrk"]["list/task_service"]["requests_per_second"],
        data["wrk"]["list/reference"]["requests_per_second"],
    )
    return data


def targets(results: Results) -> list[dict[str, Any]]:
    headline = results.headline
    return [
        target(
            "task service CPU per 20-task list",
            headline["task_service_cpu_ms_list"],
            "<=",
            LIST_CPU_LIMIT_MS,
            " ms",
        ),
        *[
            target(
                f"task service CPU per {operation} / the reference's, same run",
                headline[f"task_service_vs_reference_cpu_{operation}"],
                "<=",
                RATIO_LIMIT,
                "x",
            )
            for operation in ("list", "create", "toggle")
        ],
    ]


def section(results: Results) -> list[str]:
    data = results.scenarios[NAME]
    return [
        "## Task service against the reference (`bench/reference.py`)",
        "",
        "The reference: raw ASGI, asyncpg and orjson under uvicorn, sending the same SQL",
        "(the list statement compiled from `task_service/crud.py`; the INSERT and the",
        "UPDATE ... RETURNING of create and toggle built from the same model) and answering",
        "the same JSON, with no token check and no validation. Both are called directly, in",
        f"turn: the list (20 tasks) at {SATURATION_CONNECTIONS} connections, create and toggle"
        f" at {WRITE_CONNECTIONS}.",
        "",
        *wrk_table("operation / system", data["wrk"]),
        "CPU time per request of each server process (psutil, around every run, over the",
        "requests wrk completed in them):",
        "",
        "| operation | task service CPU ms | reference CPU ms | ratio |",
        "| --- | ---: | ---: | ---: |",
        *[
            f"| {operation} | {row['task_service']:.3f} | {row['reference']:.3f} |"
            f" {row['ratio']}x |"
            for operation, row in data["cpu_ms_per_request"].items()
        ],
        "",
    ]


SCENARIO = Scenario(NAME, measure, section, targets)
