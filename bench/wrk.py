"""Drive wrk and read its report."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from bench.config import LUA

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class WrkResult:
    """One wrk run: throughput and latency percentiles in milliseconds."""

    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int


def parse_wrk(output: str) -> WrkResult:
    """Read wrk's `--latency` report."""

    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        if match is None:
            raise ValueError(f"no {percent}% latency in wrk output")
        return float(match.group(1)) * _UNITS[match.group(2)]

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    if rate is None or total is None:
        raise ValueError("not a wrk report")
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(
        requests_per_second=float(rate.group(1)),
        p50_ms=latency("50"),
        p90_ms=latency("90"),
        p99_ms=latency("99"),
        requests=int(total.group(1)),
        errors=errors,
    )


def run_wrk(
    url: str,
    script: str,
    *,
    connections: int,
    duration: int,
    env: Mapping[str, str] | None = None,
) -> WrkResult:
    """One wrk run of `script` (a file in bench/lua/) against `url`, one thread."""
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA / script),
        url,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=True
    )
    return parse_wrk(done.stdout)


def best_together(runs: Sequence[Mapping[str, WrkResult]], by: str) -> dict[str, WrkResult]:
    """Of repeated runs, the one where `by` had the highest throughput (least disturbed).

    A run may hold several results measured at the same time (logins and the reads going
    on meanwhile): they are kept together. Each carries the errors of every run, so that
    keeping the best run hides none.
    """
    chosen = max(runs, key=lambda run: run[by].requests_per_second)
    return {
        name: replace(result, errors=sum(run[name].errors for run in runs))
        for name, result in chosen.items()
    }


def best(runs: Sequence[WrkResult]) -> WrkResult:
    """Of repeated runs of one point, the least disturbed, with the errors of every run."""
    return best_together([{"run": run} for run in runs], by="run")["run"]


def summary(result: WrkResult) -> dict[str, Any]:
    return {key: round(value, 2) for key, value in asdict(result).items()}


def report(label: str, result: WrkResult, into: dict[str, Any]) -> None:
    """Keep a result under `label` and print it."""
    into[label] = summary(result)
    print(
        f"  {label:<44} {result.requests_per_second:>9.0f} req/s   p50 {result.p50_ms:7.2f} ms"
        f"   p99 {result.p99_ms:7.2f} ms   errors {result.errors}",
        flush=True,
    )
