"""Proxying alone: a static 2 KB JSON upstream, served directly, by nginx and by the gateway.

The task service is not in the way here, so what the gateway costs shows in full: its
throughput against nginx's, and the CPU time of each proxy per request.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Receive, Scope, Send

from bench import stack as bench_stack
from bench.config import SATURATION_CONNECTIONS, WORK
from bench.sampling import CpuMeter
from bench.scenario import Results, Run, Scenario, ratio, target, wrk_table
from bench.servers import nginx_in_front_of, static_upstream, uvicorn_app
from bench.wrk import WrkResult, best, report

NAME = "proxy"
BODY_BYTES = 2048
GATEWAY_CPU_LIMIT_MS = 0.2
GATEWAY_RATE_LIMIT = 5000
PATH = "/api/static-user/tasks"
# The gateway's /metrics answers only this bearer token.
METRICS_TOKEN = "bench-metrics-token"
_GENERATIONS = ("0", "1", "2")


def static_body(size: int = BODY_BYTES) -> bytes:
    """A JSON document of exactly `size` bytes, shaped like a short task list."""
    tasks = [
        {"id": n, "title": f"Task number {n}", "completed": n % 2 == 0, "tags": ["bench"]}
        for n in range(size // 64)
    ]
    text = json.dumps(tasks, separators=(",", ":"))
    while len(text) > size - 20:
        tasks.pop()
        text = json.dumps(tasks, separators=(",", ":"))
    padding = size - len(text) - len(',{"pad":""}')
    return (text[:-1] + ',{"pad":"' + "x" * padding + '"}]').encode()


_STATIC_BODY = static_body()


async def static_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The static upstream as an ASGI app (for uvicorn where nginx is not needed): every
    request gets the same JSON."""
    if scope["type"] != "http":
        return
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_STATIC_BODY)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _STATIC_BODY})


def measure(run: Run) -> dict[str, Any]:
    print(f"Proxying alone: a static {BODY_BYTES} B JSON upstream", flush=True)
    body = WORK / "static" / "tasks.json"
    body.parent.mkdir(parents=True, exist_ok=True)
    body.write_bytes(static_body())
    data: dict[str, Any] = {"wrk": {}, "cpu_ms_per_request": {}}
    with (
        static_upstream(body) as upstream,
        nginx_in_front_of(upstream.port) as nginx,
        uvicorn_app(
            "proxy-reference",
            "bench.proxy_reference:app",
            {"PROXY_REFERENCE_UPSTREAM": upstream.url},
        ) as floor,
    ):
        # A stack of its own, on SQLite, whose gateway sends the task routes to the upstream.
        proxied = bench_stack.start(TASK_SERVICE_URL=upstream.url, METRICS_TOKEN=METRICS_TOKEN)
        try:
            gateway_pid = proxied.processes()["gateway"]
            paths = {
                "direct": (upstream.url, upstream.pid),
                "nginx": (nginx.url, nginx.pid),
                "client_alone": (floor.url, floor.pid),
                "gateway": (proxied.base_url, gateway_pid),
            }
            runs: dict[str, list[WrkResult]] = {name: [] for name in paths}
            cpu = dict.fromkeys(paths, 0.0)
            requests = dict.fromkeys(paths, 0)
            collections = dict.fromkeys(_GENERATIONS, 0.0)
            # Interleaved, so drift on a shared machine hits every path alike.
            for _ in range(run.repeats):
                for name, (base, pid) in paths.items():
                    counted = name == "gateway"
                    before = _collections(proxied.base_url) if counted else {}
                    with CpuMeter({name: pid}) as meter:
                        result = run.wrk(
                            base + PATH,
                            "get.lua",
                            connections=SATURATION_CONNECTIONS,
                            env={"TOKEN": "not-checked"},
                        )
                    runs[name].append(result)
                    cpu[name] += meter.seconds[name]
                    requests[name] += result.requests
                    if counted:
                        after = _collections(proxied.base_url)
                        for generation in collections:
                            collections[generation] += after[generation] - before[generation]
        finally:
            proxied.stop()
    for name in paths:
        report(f"saturation/{name}", best(runs[name]), data["wrk"])
        data["cpu_ms_per_request"][name] = round(cpu[name] * 1000 / max(requests[name], 1), 4)
    print(
        "  CPU per request: "
        + ", ".join(f"{name} {ms:.4f} ms" for name, ms in data["cpu_ms_per_request"].items()),
        flush=True,
    )
    per_thousand = 1000 / max(requests["gateway"], 1)
    data["gateway_collections_per_1000"] = {
        generation: round(count * per_thousand, 3) for generation, count in collections.items()
    }
    print(
        "  gateway garbage collections per 1,000 requests, by generation: "
        + ", ".join(f"{g} {n}" for g, n in data["gateway_collections_per_1000"].items()),
        flush=True,
    )
    headline = run.results.headline
    for name in paths:
        headline[f"proxy_{name}_req_s"] = data["wrk"][f"saturation/{name}"]["requests_per_second"]
    cpu_ms = data["cpu_ms_per_request"]
    headline["gateway_cpu_ms_per_proxied_request"] = cpu_ms["gateway"]
    headline["nginx_cpu_ms_per_proxied_request"] = cpu_ms["nginx"]
    headline["client_alone_cpu_ms_per_proxied_request"] = cpu_ms["client_alone"]
    headline["gateway_vs_client_alone_cpu"] = ratio(cpu_ms["gateway"], cpu_ms["client_alone"])
    return data


def _collections(base_url: str) -> dict[str, float]:
    """The gateway's garbage collections so far, by generation (from its /metrics)."""
    answer = httpx2.get(
        base_url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    answer.raise_for_status()
    return collections_in(answer.text)


def collections_in(metrics: str) -> dict[str, float]:
    """Garbage collections by generation, read from a Prometheus exposition."""
    counts = {
        sample.labels["generation"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "python_gc_collections_total"
    }
    return {generation: counts[generation] for generation in _GENERATIONS}


def targets(results: Results) -> list[dict[str, Any]]:
    headline = results.headline
    return [
        target(
            "gateway CPU per request proxied to the static upstream",
            headline["gateway_cpu_ms_per_proxied_request"],
            "<=",
            GATEWAY_CPU_LIMIT_MS,
            " ms",
        ),
        target(
            f"gateway throughput proxying the static upstream, {SATURATION_CONNECTIONS}"
            " connections",
            headline["proxy_gateway_req_s"],
            ">=",
            GATEWAY_RATE_LIMIT,
            " req/s",
        ),
    ]


def section(results: Results) -> list[str]:
    data = results.scenarios[NAME]
    return [
        f"## Proxying alone (a static {BODY_BYTES}-byte JSON upstream)",
        "",
        "nginx serves one file for every path (`direct`); nginx as a reverse proxy with",
        "upstream keep-alive, the gateway's HTTP client alone (`client_alone`:",
        "`bench/proxy_reference.py`, raw ASGI on the gateway's server relaying each request",
        "through an aiohttp session opened as the gateway opens its own, nothing else) and the",
        "gateway of a second stack (its task routes pointed at the file server) forward",
        f"`GET {PATH}` to it. {SATURATION_CONNECTIONS} connections.",
        "",
        *wrk_table("path", data["wrk"]),
        "CPU time per request of the process answering wrk (nginx: master and worker):",
        "",
        "| path | CPU ms/request |",
        "| --- | ---: |",
        *[f"| {name} | {ms:.4f} |" for name, ms in data["cpu_ms_per_request"].items()],
        "",
        "`client_alone` is the floor of the gateway's choice of server and client: its CPU per",
        "request is what the gateway would cost with none of its own work (header rules,",
        "limits, request ids, logs, metrics, CORS, disconnect handling).",
        "",
        *_collections_lines(data),
    ]


def _collections_lines(data: dict[str, Any]) -> list[str]:
    counts = data.get("gateway_collections_per_1000")
    if counts is None:  # results written before the scenario counted them
        return []
    return [
        "The gateway's garbage collections while wrk ran on it, per 1,000 requests, by",
        "generation (0 young, 2 full; its `python_gc_collections_total`): "
        + ", ".join(f"{generation}: {count}" for generation, count in counts.items())
        + ".",
        "",
    ]


SCENARIO = Scenario(NAME, measure, section, targets)
