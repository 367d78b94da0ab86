"""The 20-task list served directly, through the gateway and through nginx."""

from __future__ import annotations

from typing import Any

from bench.config import MODERATE_CONNECTIONS, SATURATION_CONNECTIONS, THINK_MS
from bench.sampling import CpuMeter
from bench.scenario import Results, Run, Scenario, ratio, target, wrk_table
from bench.servers import nginx_in_front_of
from bench.wrk import WrkResult, best, report

NAME = "gateway_cost"


def measure(run: Run) -> dict[str, Any]:
    print("Gateway cost: GET the 20-task list", flush=True)
    stack, user = run.stack, run.reader
    processes = stack.processes()
    watched = {name: processes[name] for name in ("gateway", "tasks")}
    data: dict[str, Any] = {"wrk": {}, "cpu_ms_per_request": {}}
    with nginx_in_front_of(int(stack.env["TASK_SERVICE_PORT"])) as nginx:
        paths = {"direct": stack.task_service_url, "gateway": stack.base_url, "nginx": nginx.url}
        # CPU seconds each watched process spent during the saturation runs of each path.
        cpu = {path: dict.fromkeys(watched, 0.0) for path in paths}
        saturation_requests = dict.fromkeys(paths, 0)
        for load, connections, think in (
            ("moderate", MODERATE_CONNECTIONS, THINK_MS),
            ("saturation", SATURATION_CONNECTIONS, 0),
        ):
            runs: dict[str, list[WrkResult]] = {name: [] for name in paths}
            # Interleaved, so drift on a shared machine hits every path alike.
            for _ in range(run.repeats):
                for name, base in paths.items():
                    with CpuMeter(watched) as meter:
                        result = run.wrk(
                            base + user.tasks_path,
                            "get.lua",
                            connections=connections,
                            env={"TOKEN": user.token, "THINK_MS": str(think)},
                        )
                    runs[name].append(result)
                    if load == "saturation":
                        saturation_requests[name] += result.requests
                        for process, seconds in meter.seconds.items():
                            cpu[name][process] += seconds
            for name in paths:
                report(f"{load}/{name}", best(runs[name]), data["wrk"])
    # Over every saturation run of a path, not only the one kept: total CPU time over total
    # requests.
    for name in paths:
        per_request = {
            f"{process}_cpu_ms": round(seconds * 1000 / max(saturation_requests[name], 1), 3)
            for process, seconds in cpu[name].items()
        }
        data["cpu_ms_per_request"][name] = per_request
        print(
            f"  saturation/{name:<8} CPU per request: gateway {per_request['gateway_cpu_ms']:.3f}"
            f" ms, task service {per_request['tasks_cpu_ms']:.3f} ms",
            flush=True,
        )
    wrk = data["wrk"]
    headline = run.results.headline
    headline["end_to_end_list_req_s"] = wrk["saturation/gateway"]["requests_per_second"]
    headline["end_to_end_list_p99_ms"] = wrk["saturation/gateway"]["p99_ms"]
    headline["gateway_vs_nginx_ratio"] = ratio(
        wrk["saturation/gateway"]["requests_per_second"],
        wrk["saturation/nginx"]["requests_per_second"],
    )
    headline["gateway_added_p50_ms_moderate"] = round(
        wrk["moderate/gateway"]["p50_ms"] - wrk["moderate/direct"]["p50_ms"], 3
    )
    headline["nginx_added_p50_ms_moderate"] = round(
        wrk["moderate/nginx"]["p50_ms"] - wrk["moderate/direct"]["p50_ms"], 3
    )
    return data


def targets(results: Results) -> list[dict[str, Any]]:
    headline = results.headline
    return [
        target(
            f"end to end: 20-task list through the gateway, {SATURATION_CONNECTIONS} connections",
            headline["end_to_end_list_req_s"],
            ">=",
            2000,
            " req/s",
        ),
        target(
            f"end to end: p99 of that list at {SATURATION_CONNECTIONS} connections",
            headline["end_to_end_list_p99_ms"],
            "<",
            100,
            " ms",
        ),
        target(
            "gateway's added p50 at moderate load (gateway p50 - direct p50)",
            headline["gateway_added_p50_ms_moderate"],
            "<=",
            1,
            " ms",
        ),
    ]


def section(results: Results) -> list[str]:
    data = results.scenarios[NAME]
    return [
        "## Gateway cost (`GET /api/{user_id}/tasks`, 20 tasks)",
        "",
        f"Moderate: {MODERATE_CONNECTIONS} connections pausing {THINK_MS} ms between requests;"
        f" saturation: {SATURATION_CONNECTIONS} connections, no pause. `direct` is the task"
        " service itself; `nginx` is nginx in front of the same task service.",
        "",
        *wrk_table("load / path", data["wrk"]),
        "CPU time per request at saturation (user + system time of each process, read with",
        "psutil around every saturation run, over the requests wrk completed in them).",
        "",
        "| path | gateway CPU ms/request | task service CPU ms/request |",
        "| --- | ---: | ---: |",
        *[
            f"| {name} | {row['gateway_cpu_ms']:.3f} | {row['tasks_cpu_ms']:.3f} |"
            for name, row in data["cpu_ms_per_request"].items()
        ],
        "",
    ]


SCENARIO = Scenario(NAME, measure, section, targets)
