"""Hostile clients on the public port while a normal client works.

For `HOSTILE_DURATION_S`, at the same time: slow-body uploads (a declared 100,000-byte body
sent one byte every 12 s, half to the task service, half to sign-in), connections that
dribble their request headers one byte a second, idle sockets, and a normal client doing
list/create/toggle at 20 requests/s through the gateway. Each attacker reconnects whenever
the stack closes its connection, so the pressure lasts the whole run. The attackers run in
a process of their own, so their work does not slow the client that is measured.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import httpx2

from bench.sampling import MemoryPeaks, memory_line, memory_now
from bench.scenario import Results, Run, Scenario, target
from bench.seeding import User, register

NAME = "hostile"
HOSTILE_DURATION_S = 30
SLOW_BODIES = 500
DRIBBLED_HEADERS = 500
IDLE_SOCKETS = 200
SLOW_BODY_BYTE_EVERY_S = 12.0
HEADER_BYTE_EVERY_S = 1.0
NORMAL_RATE_PER_S = 20
P99_LIMIT_MS = 250
GROWTH_LIMIT_MIB = 50


async def _attacker(
    host: str, port: int, head: bytes, *, every_s: float, drip: bytes, stop_at: float
) -> Counter[str]:
    """One hostile connection, reopened each time the server closes it, until `stop_at`.

    Sends `head`, then `drip` every `every_s` seconds (nothing when `drip` is empty).
    """
    seen: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            seen["connect failed"] += 1
            await asyncio.sleep(0.5)
            continue
        try:
            if head:
                writer.write(head)
            while loop.time() < stop_at:
                wait = min(every_s, stop_at - loop.time())
                try:
                    answer = await asyncio.wait_for(reader.read(65536), max(wait, 0.01))
                except TimeoutError:
                    if drip:
                        writer.write(drip)
                        await writer.drain()
                    continue
                status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else ""
                seen[f"answered {status}" if status else "closed"] += 1
                break
        except OSError:
            seen["reset"] += 1
        finally:
            writer.close()
    return seen


async def _attack(base_url: str, duration_s: float, user_id: str) -> dict[str, int]:
    address = urlsplit(base_url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    stop_at = asyncio.get_running_loop().time() + duration_s
    body_heads = [
        f"POST /api/{user_id}/tasks HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json"
        "\r\nContent-Length: 100000\r\n\r\n{".encode(),
        b"POST /auth/login HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{",
    ]
    work = [
        *(
            _attacker(
                host,
                port,
                body_heads[n % 2],
                every_s=SLOW_BODY_BYTE_EVERY_S,
                drip=b" ",
                stop_at=stop_at,
            )
            for n in range(SLOW_BODIES)
        ),
        *(
            _attacker(
                host,
                port,
                b"GET / HTTP/1.1\r\nX-",
                every_s=HEADER_BYTE_EVERY_S,
                drip=b"a",
                stop_at=stop_at,
            )
            for _ in range(DRIBBLED_HEADERS)
        ),
        *(
            _attacker(host, port, b"", every_s=duration_s, drip=b"", stop_at=stop_at)
            for _ in range(IDLE_SOCKETS)
        ),
    ]
    total: Counter[str] = Counter()
    for seen in await asyncio.gather(*work):
        total.update(seen)
    return dict(total)


def _attack_process(base_url: str, duration_s: float, user_id: str, queue: Any) -> None:
    queue.put(asyncio.run(_attack(base_url, duration_s, user_id)))


async def _normal_client(base_url: str, user: User, duration_s: float) -> dict[str, Any]:
    """list, create, toggle, ... at a fixed rate (open loop: a slow answer delays no other)."""
    headers = {"Authorization": f"Bearer {user.token}"}
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    created: list[str] = []

    async with httpx2.AsyncClient(base_url=base_url, headers=headers, timeout=10) as client:

        async def one(n: int) -> None:
            kind = n % 3
            started = time.perf_counter()
            try:
                if kind == 0 or not created:
                    response = await client.get(user.tasks_path, params={"limit": 20})
                elif kind == 1:
                    response = await client.post(user.tasks_path, json={"title": f"hostile {n}"})
                    if response.status_code == 201:
                        created.append(response.json()["id"])
                else:
                    task_id = created[n % len(created)]
                    response = await client.patch(f"{user.tasks_path}/{task_id}/complete")
                statuses[str(response.status_code)] += 1
            except httpx2.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            latencies.append((time.perf_counter() - started) * 1000)

        pending = []
        count = int(duration_s * NORMAL_RATE_PER_S)
        started_at = time.perf_counter()
        for n in range(count):
            delay = started_at + n / NORMAL_RATE_PER_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one(n)))
        await asyncio.gather(*pending)

    ordered = sorted(latencies)
    errors = sum(count for status, count in statuses.items() if not status.startswith("2"))
    return {
        "requests": len(ordered),
        "errors": errors,
        "statuses": dict(statuses),
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 1),
        "max_ms": round(ordered[-1], 1),
    }


def measure(run: Run) -> dict[str, Any]:
    print(
        f"Hostile clients for {HOSTILE_DURATION_S} s: {SLOW_BODIES} slow bodies,"
        f" {DRIBBLED_HEADERS} dribbled headers, {IDLE_SOCKETS} idle sockets,"
        f" a normal client at {NORMAL_RATE_PER_S}/s",
        flush=True,
    )
    base = run.stack.base_url
    user = register(base, "hostile")
    processes = run.stack.processes()
    before = memory_now(processes)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    attackers = context.Process(
        target=_attack_process, args=(base, HOSTILE_DURATION_S, user.id, queue)
    )
    attackers.start()
    time.sleep(1)  # let the attackers connect first
    with MemoryPeaks(processes) as peaks:
        normal = asyncio.run(_normal_client(base, user, HOSTILE_DURATION_S - 2))
        seen = queue.get(timeout=HOSTILE_DURATION_S + 60)
    attackers.join(timeout=30)
    peak = peaks.summary()
    growth = {
        name: round(value - (before["rss_mib"].get(name) or 0.0), 1)
        for name, value in peak["rss_mib"].items()
        if name != "total" and value is not None
    }
    print(
        f"  normal client: {normal['requests']} requests, {normal['errors']} errors,"
        f" p50 {normal['p50_ms']} ms, p99 {normal['p99_ms']} ms",
        flush=True,
    )
    print(f"  before: {memory_line(before)}; peak: {memory_line(peak)}", flush=True)
    print(f"  attackers saw: {seen}", flush=True)
    return {
        "duration_s": HOSTILE_DURATION_S,
        "normal": normal,
        "memory_before": before,
        "memory_peak": peak,
        "rss_growth_mib": growth,
        "attackers_saw": seen,
    }


def targets(results: Results) -> list[dict[str, Any]]:
    data = results.scenarios[NAME]
    normal = data["normal"]
    return [
        target("hostile: failed requests of the normal client", normal["errors"], "<=", 0, ""),
        target("hostile: normal client's p99", normal["p99_ms"], "<", P99_LIMIT_MS, " ms"),
        target(
            "hostile: most any process's RSS grew",
            max(data["rss_growth_mib"].values()),
            "<=",
            GROWTH_LIMIT_MIB,
            " MiB",
        ),
    ]


def section(results: Results) -> list[str]:
    data = results.scenarios[NAME]
    normal = data["normal"]
    peak, before = data["memory_peak"]["rss_mib"], data["memory_before"]["rss_mib"]
    growth = data["rss_growth_mib"]
    rows = [
        f"| {name} | {before.get(name) or 0:.0f} | {value:.0f} | {growth[name]:+.0f} |"
        for name, value in peak.items()
        if name != "total" and value is not None
    ]
    seen = ", ".join(f"{what}: {count}" for what, count in sorted(data["attackers_saw"].items()))
    return [
        "## Hostile clients",
        "",
        f"For {data['duration_s']} s at once: {SLOW_BODIES} slow-body uploads (one byte every"
        f" {SLOW_BODY_BYTE_EVERY_S:g} s), {DRIBBLED_HEADERS} connections dribbling their"
        f" headers, {IDLE_SOCKETS} idle sockets, each reopened whenever it is closed, and a"
        f" normal client (list, create, toggle) at {NORMAL_RATE_PER_S} requests/s.",
        "",
        f"Normal client: {normal['requests']} requests, {normal['errors']} failed"
        f" ({', '.join(f'{k}: {v}' for k, v in sorted(normal['statuses'].items()))}),"
        f" p50 {normal['p50_ms']} ms, p99 {normal['p99_ms']} ms, max {normal['max_ms']} ms.",
        "",
        "| process | RSS before, MiB | peak, MiB | growth |",
        "| --- | ---: | ---: | ---: |",
        *rows,
        "",
        f"What the attackers got: {seen}.",
        "",
    ]


SCENARIO = Scenario(NAME, measure, section, targets)
