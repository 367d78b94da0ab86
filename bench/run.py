#!/usr/bin/env python3
"""Benchmarks of the stack, side by side on this machine.

    python bench/run.py [--duration 10] [--repeats 2] [--output DIR]

Starts what it needs on free loopback ports (the stack with `python app.py` on PostgreSQL,
nginx in front of the same task service), drives it with wrk, prints a table and writes
results.md and results.json: into bench/ for a full run, into bench/.work/quick/ for a
shorter one (so a quick look never replaces the committed results), or into --output.
Needs wrk and nginx (installed with apt-get when missing and allowed) and a PostgreSQL
server (BENCH_DATABASE_URL, default the local one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx2

ROOT = Path(__file__).resolve().parent.parent
# Run as `python bench/run.py`: the project's own modules are importable from its root.
sys.path.insert(0, str(ROOT))

from auth_service.security import password_context  # noqa: E402

BENCH = ROOT / "bench"
WORK = BENCH / ".work"
QUICK_OUTPUT = WORK / "quick"
WRK_SCRIPTS = BENCH / "wrk"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
# A full run: what the committed results are measured with.
FULL_DURATION_S = 10
FULL_REPEATS = 2
PASSWORD = "benchmark password"
# Moderate load: two connections, each pausing this long between requests.
MODERATE_CONNECTIONS = 2
THINK_MS = 5
SATURATION_CONNECTIONS = 32
WRITE_CONNECTIONS = 10
# The programs supervisord runs (supervisord.conf), by the names the reports use.
PROGRAMS = {"listener": "exit_on_fatal", "gateway": "gateway", "auth": "auth", "tasks": "tasks"}
START_UP_RUNS = 3
# OWASP Password Storage Cheat Sheet, argon2id: the first of its equivalent minimum
# configurations (19 MiB, 2 passes, 1 lane). It also lists m=47104 KiB with t=1; this
# harness compares with m=19456 KiB, t=2, the one the auth service's settings cite.
OWASP_ARGON2ID_MINIMUM = {"memory_kib": 19_456, "passes": 2, "lanes": 1}
# List latency by data size: the user's task counts, and the list queries measured at each.
SCALE_SIZES = (100, 10_000, 100_000)
SCALE_QUERIES = (
    "limit=50",
    "limit=50&status=pending",
    # Its total sums the kept counts of one priority (two rows), like the status filter.
    "limit=50&priority=high",
    # A non-default order, read through its own index like every sort key.
    "limit=50&sort=title&order=asc",
)

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
    env: dict[str, str],
) -> WrkResult:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(WRK_SCRIPTS / script),
        url,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **env}, check=True
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_tools() -> None:
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"Install {' and '.join(missing)} first (Debian: apt-get install wrk nginx-light)")
    print(f"Installing {', '.join(missing)} with apt-get...", flush=True)
    packages = ["wrk" if tool == "wrk" else "nginx-light" for tool in missing]
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # A fresh machine has no package lists yet: install would not find the packages.
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=apt_env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=apt_env)
    # Debian starts the packaged nginx on port 80; the benchmark runs its own.
    subprocess.run(["service", "nginx", "stop"], check=False, capture_output=True)


@dataclass
class Stack:
    """`python app.py` running on free ports."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    healthy_after: float = 0.0

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    @property
    def task_service(self) -> str:
        return f"http://127.0.0.1:{self.env['TASK_SERVICE_PORT']}"

    def processes(self) -> dict[str, int]:
        """The pid of supervisord and of every program it runs, by a short name."""
        command = [sys.executable, "-m", "supervisor.supervisorctl", "-c", "supervisord.conf"]
        out = subprocess.run(
            [*command, "pid", *PROGRAMS.values()],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        found = {"supervisord": self.process.pid}
        for name, line in zip(PROGRAMS, out.splitlines(), strict=False):
            if line.strip().isdigit() and int(line) > 0:
                found[name] = int(line)
        return found

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far, user and system (from /proc/<pid>/stat)."""
    # Fields after the command name (which may hold spaces) start at the third, the state;
    # utime and stime are the 14th and 15th.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> tuple[int, int | None]:
    """Resident memory of a process and, when the kernel shows it, its proportional share.

    RSS counts every page the process maps, so pages shared between processes (the Python
    interpreter, libraries) are counted once per process; PSS splits them between sharers.
    """
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    rss = int(match.group(1)) if match else 0
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return rss, None
    match = re.search(r"^Pss:\s+(\d+) kB", rollup, re.MULTILINE)
    return rss, int(match.group(1)) if match else None


class MemoryPeaks:
    """Peak RSS and PSS of each process, and of their sum, while a block of code runs.

    The sum's peak is the highest sum seen at one instant, not the sum of the peaks.
    """

    def __init__(self, processes: Mapping[str, int], interval_s: float = 0.5) -> None:
        self.processes = dict(processes)
        self.interval_s = interval_s
        self.rss_kib: dict[str, int] = {}
        self.pss_kib: dict[str, int | None] = {}
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample_until_done)

    def __enter__(self) -> MemoryPeaks:
        self.sample()
        self._sampler.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._sampler.join()

    def _sample_until_done(self) -> None:
        while not self._done.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        rss_total, pss_total = 0, 0
        pss_known = True
        for name, pid in self.processes.items():
            try:
                rss, pss = memory_kib(pid)
            except OSError:  # the process has gone: keep what was seen
                continue
            rss_total += rss
            self.rss_kib[name] = max(self.rss_kib.get(name, 0), rss)
            if pss is None:
                pss_known = False
                self.pss_kib[name] = None
            else:
                pss_total += pss
                self.pss_kib[name] = max(self.pss_kib.get(name) or 0, pss)
        self.rss_kib["total"] = max(self.rss_kib.get("total", 0), rss_total)
        self.pss_kib["total"] = (
            max(self.pss_kib.get("total") or 0, pss_total) if pss_known else None
        )

    def summary(self) -> dict[str, dict[str, float | None]]:
        return {
            "rss_mib": {name: round(kib / 1024, 1) for name, kib in self.rss_kib.items()},
            "pss_mib": {
                name: None if kib is None else round(kib / 1024, 1)
                for name, kib in self.pss_kib.items()
            },
        }


def memory_now(processes: Mapping[str, int]) -> dict[str, dict[str, float | None]]:
    """RSS and PSS of each process and their sum, at this instant."""
    peaks = MemoryPeaks(processes)
    peaks.sample()
    return peaks.summary()


def start_stack(**overrides: str) -> Stack:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "SECRET_KEY", "APP_ENV", "DATA_DIR"}
    }
    run_dir = WORK / f"stack-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True)
    env.update(
        HOST="127.0.0.1",
        PORT=str(free_port()),
        AUTH_SERVICE_PORT=str(free_port()),
        TASK_SERVICE_PORT=str(free_port()),
        SECRET_KEY="benchmark-secret-key-0123456789abcdefghijklmnop",
        DATA_DIR=str(run_dir / "data"),
        SUPERVISOR_RUN_DIR=str(run_dir),
        # The limiter would measure itself: sign-in throttling is not what is benchmarked.
        AUTH_RATE_LIMIT="100000000/minute",
        LOGIN_FAILURE_LIMIT="100000000/minute",
    )
    env.update(overrides)
    log = (run_dir / "stack.log").open("wb")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack = Stack(process, env)
    deadline = started + 60
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"{stack.gateway}/health", timeout=1).status_code == 200:
                stack.healthy_after = time.monotonic() - started
                return stack
        except httpx2.HTTPError:
            pass
        time.sleep(0.05)
    stack.stop()
    sys.exit(f"the stack did not become healthy; see {run_dir / 'stack.log'}")


@contextmanager
def nginx_in_front_of(upstream_port: int) -> Iterator[str]:
    """nginx as a reverse proxy with upstream keep-alive; yields its base URL."""
    port = free_port()
    prefix = WORK / f"nginx-{port}"
    prefix.mkdir(parents=True)
    config = prefix / "nginx.conf"
    config.write_text(
        f"""daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream tasks {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://tasks;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""
    )
    stderr = prefix / "stderr.log"
    with stderr.open("wb") as stderr_file:
        process = subprocess.Popen(
            ["nginx", "-p", str(prefix), "-c", str(config)], stderr=stderr_file
        )
    url = f"http://127.0.0.1:{port}"
    if not _answers(url, process):
        process.terminate()
        process.wait(timeout=10)
        error_log = prefix / "error.log"
        details = stderr.read_text() + (error_log.read_text() if error_log.exists() else "")
        sys.exit(f"nginx did not answer on {url}:\n{details.strip() or '(no output)'}")
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(url: str, process: subprocess.Popen[bytes]) -> bool:
    """True once the server answers any HTTP request; False if it exits or never does."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx2.get(f"{url}/health", timeout=1)
            return True
        except httpx2.HTTPError:
            time.sleep(0.05)
    return False


@dataclass
class User:
    id: str
    token: str
    email: str

    @property
    def tasks_path(self) -> str:
        return f"/api/{self.id}/tasks"


def register(base_url: str, label: str) -> User:
    email = f"{label}-{uuid.uuid4().hex[:8]}@bench.example.com"
    response = httpx2.post(
        f"{base_url}/auth/register", json={"email": email, "password": PASSWORD}, timeout=10
    )
    if response.status_code != 201:
        sys.exit(f"registering {email} failed: {response.status_code} {response.text}")
    body = response.json()
    return User(body["user"]["id"], body["access_token"], email)


async def seed_tasks(database_url: str, schema: str, user_id: str, count: int) -> None:
    """Insert `count` tasks for one user straight into the table."""
    now = datetime.now(UTC)
    records = [
        (
            user_id,
            f"Task number {n}",
            "seeded for the benchmark" if n % 3 else None,
            n % 2 == 0,
            ("low", "medium", "high")[n % 3],
            now + timedelta(days=n % 90) if n % 4 else None,
            json.dumps(["bench", f"group{n % 10}"]),
            now - timedelta(seconds=count - n),
            now - timedelta(seconds=count - n),
        )
        for n in range(count)
    ]
    connection = await asyncpg.connect(database_url)
    try:
        await connection.copy_records_to_table(
            "tasks",
            schema_name=schema,
            records=records,
            columns=[
                "user_id",
                "title",
                "description",
                "completed",
                "priority",
                "due_date",
                "tags",
                "created_at",
                "updated_at",
            ],
        )
    finally:
        await connection.close()


async def settle(database_url: str, schema: str) -> None:
    """Leave the database as after a quiet night: statistics fresh, bulk writes flushed.

    Otherwise the background writer flushing a fresh bulk load competes with the requests
    measured right after it.
    """
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(f'VACUUM ANALYZE "{schema}".tasks')
        await connection.execute(f'VACUUM ANALYZE "{schema}".task_counts')
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


@dataclass
class Results:
    machine: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    gateway_cost: dict[str, dict[str, Any]] = field(default_factory=dict)
    cpu_per_request: dict[str, dict[str, float]] = field(default_factory=dict)
    scale: dict[str, dict[str, Any]] = field(default_factory=dict)
    query_plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    writes: dict[str, dict[str, Any]] = field(default_factory=dict)
    logins: dict[str, Any] = field(default_factory=dict)
    footprint: dict[str, Any] = field(default_factory=dict)
    headline: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)


def code_version() -> dict[str, Any]:
    """The commit measured, and whether the working tree differed from it."""

    def git(*arguments: str) -> str:
        done = subprocess.run(
            ["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    try:
        return {
            "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain")),
        }
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown (not a git checkout)", "git_dirty": None}


def machine_info(database_url: str) -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]

    async def server_version() -> str:
        connection = await asyncpg.connect(database_url)
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()

    def version(command: list[str]) -> str:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        return (done.stdout + done.stderr).strip().splitlines()[0]

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{memory_kib / 1024 / 1024:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": asyncio.run(server_version()),
        "nginx": version(["nginx", "-v"]),
        "wrk": version(["wrk", "-v"]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        **code_version(),
    }


def summary(result: WrkResult) -> dict[str, Any]:
    return {key: round(value, 2) for key, value in asdict(result).items()}


def measure(
    label: str, repeats: int, run: Callable[[], WrkResult], results: dict[str, dict[str, Any]]
) -> None:
    report(label, best([run() for _ in range(repeats)]), results)


def report(label: str, result: WrkResult, results: dict[str, dict[str, Any]]) -> None:
    results[label] = summary(result)
    print(
        f"  {label:<40} {result.requests_per_second:>9.0f} req/s   p50 {result.p50_ms:7.2f} ms"
        f"   p99 {result.p99_ms:7.2f} ms   errors {result.errors}",
        flush=True,
    )


def gateway_cost(stack: Stack, user: User, args: argparse.Namespace, results: Results) -> None:
    """The same list request served directly, through the gateway and through nginx."""
    print("1. Gateway cost: GET the 20-task list", flush=True)
    env = {"TOKEN": user.token}
    processes = stack.processes()
    watched = {name: processes[name] for name in ("gateway", "tasks")}
    with nginx_in_front_of(int(stack.env["TASK_SERVICE_PORT"])) as nginx:
        targets = {"direct": stack.task_service, "gateway": stack.gateway, "nginx": nginx}
        # CPU seconds each watched process spent during the saturation runs of each target.
        cpu = {path: dict.fromkeys(watched, 0.0) for path in targets}
        saturation_requests = dict.fromkeys(targets, 0)
        for load, connections, think in (
            ("moderate", MODERATE_CONNECTIONS, THINK_MS),
            ("saturation", SATURATION_CONNECTIONS, 0),
        ):
            runs: dict[str, list[WrkResult]] = {name: [] for name in targets}
            # Interleaved, so drift on a shared machine hits every target alike.
            for _ in range(args.repeats):
                for name, base in targets.items():
                    before = {process: cpu_seconds(pid) for process, pid in watched.items()}
                    result = run_wrk(
                        base + user.tasks_path,
                        "get.lua",
                        connections=connections,
                        duration=args.duration,
                        env={**env, "THINK_MS": str(think)},
                    )
                    runs[name].append(result)
                    if load == "saturation":
                        saturation_requests[name] += result.requests
                        for process, pid in watched.items():
                            cpu[name][process] += cpu_seconds(pid) - before[process]
            for name in targets:
                report(f"{load}/{name}", best(runs[name]), results.gateway_cost)
    # Over every saturation run of a path, not only the one kept: total CPU time over total
    # requests.
    for name in targets:
        results.cpu_per_request[name] = {
            f"{process}_cpu_ms": round(seconds * 1000 / max(saturation_requests[name], 1), 3)
            for process, seconds in cpu[name].items()
        }
        print(
            f"  saturation/{name:<8} CPU per request: gateway"
            f" {results.cpu_per_request[name]['gateway_cpu_ms']:.3f} ms,"
            f" task service {results.cpu_per_request[name]['tasks_cpu_ms']:.3f} ms",
            flush=True,
        )
    proxied = results.cpu_per_request["gateway"]
    results.headline["gateway_cpu_ms_per_request_saturation"] = proxied["gateway_cpu_ms"]
    results.headline["task_service_cpu_ms_per_request_saturation"] = proxied["tasks_cpu_ms"]
    cost = results.gateway_cost
    results.headline["gateway_vs_nginx_ratio"] = round(
        cost["saturation/gateway"]["requests_per_second"]
        / cost["saturation/nginx"]["requests_per_second"],
        3,
    )
    results.headline["gateway_added_p50_ms_moderate"] = round(
        cost["moderate/gateway"]["p50_ms"] - cost["moderate/direct"]["p50_ms"], 3
    )
    results.headline["nginx_added_p50_ms_moderate"] = round(
        cost["moderate/nginx"]["p50_ms"] - cost["moderate/direct"]["p50_ms"], 3
    )


def scale_with_data(
    stack: Stack, database_url: str, args: argparse.Namespace, results: Results
) -> None:
    print("2. List latency by the user's task count (limit=50, through the gateway)", flush=True)
    schema = stack.env["TASK_DB_SCHEMA"]
    users: dict[int, User] = {}
    for count in SCALE_SIZES:
        users[count] = register(stack.gateway, f"scale{count}")
        asyncio.run(seed_tasks(database_url, schema, users[count].id, count))
    asyncio.run(settle(database_url, schema))
    points = {
        f"{count} tasks, ?{query}": (user, query)
        for count, user in users.items()
        for query in SCALE_QUERIES
    }
    runs: dict[str, list[WrkResult]] = {label: [] for label in points}
    # Interleaved, so drift on a shared machine hits every size alike.
    for _ in range(args.repeats):
        for label, (user, query) in points.items():
            runs[label].append(
                run_wrk(
                    f"{stack.gateway}{user.tasks_path}?{query}",
                    "get.lua",
                    connections=MODERATE_CONNECTIONS,
                    duration=args.duration,
                    env={"TOKEN": user.token, "THINK_MS": str(THINK_MS)},
                )
            )
    for label in points:
        report(label, best(runs[label]), results.scale)
    smallest, largest = SCALE_SIZES[0], SCALE_SIZES[-1]
    for query in SCALE_QUERIES:
        small = results.scale[f"{smallest} tasks, ?{query}"]["p50_ms"]
        large = results.scale[f"{largest} tasks, ?{query}"]["p50_ms"]
        results.headline[f"list_100k_vs_100_p50_ratio ({query})"] = round(large / small, 3)
    # After the runs, so the plans meet the same warm cache as the requests measured.
    results.query_plans = asyncio.run(explain_lists(database_url, schema, users[largest].id))
    for label, plan in results.query_plans.items():
        print(
            f"  EXPLAIN {label:<42} {plan['execution_ms']:7.3f} ms  {' > '.join(plan['nodes'])}",
            flush=True,
        )


# What the task service sends for a list (task_service/crud.py, list_tasks), written out by
# hand as SQLAlchemy renders it for asyncpg (the user always $1): the page, then the total for
# X-Total-Count, summed from the kept counts unless a tag or text filter asks for a count.
_TASK_COLUMNS = (
    "tasks.id, tasks.user_id, tasks.title, tasks.description, tasks.completed, "
    "tasks.priority, tasks.due_date, tasks.tags, tasks.created_at, tasks.updated_at"
)
LIST_STATEMENTS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "limit=50: page": (
        f"SELECT {_TASK_COLUMNS} FROM {{schema}}.tasks WHERE tasks.user_id = $1::VARCHAR"
        " ORDER BY tasks.created_at DESC, tasks.id DESC LIMIT $2::INTEGER OFFSET $3::INTEGER",
        (50, 0),
    ),
    "limit=50: total (kept counts)": (
        "SELECT CAST(coalesce(sum(task_counts.count), $2::INTEGER) AS BIGINT) AS coalesce_1"
        " FROM {schema}.task_counts WHERE task_counts.user_id = $1::VARCHAR",
        (0,),
    ),
    "limit=50&priority=high: page": (
        f"SELECT {_TASK_COLUMNS} FROM {{schema}}.tasks"
        " WHERE tasks.user_id = $1::VARCHAR AND tasks.priority = $2::VARCHAR"
        " ORDER BY tasks.created_at DESC, tasks.id DESC LIMIT $3::INTEGER OFFSET $4::INTEGER",
        ("high", 50, 0),
    ),
    "limit=50&priority=high: total (kept counts)": (
        "SELECT CAST(coalesce(sum(task_counts.count), $2::INTEGER) AS BIGINT) AS coalesce_1"
        " FROM {schema}.task_counts"
        " WHERE task_counts.user_id = $1::VARCHAR AND task_counts.priority = $3::VARCHAR",
        (0, "high"),
    ),
    "limit=50&sort=title&order=asc: page": (
        f"SELECT {_TASK_COLUMNS} FROM {{schema}}.tasks WHERE tasks.user_id = $1::VARCHAR"
        " ORDER BY lower(tasks.title) ASC, tasks.id ASC LIMIT $2::INTEGER OFFSET $3::INTEGER",
        (50, 0),
    ),
}


async def explain_lists(database_url: str, schema: str, user_id: str) -> dict[str, dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of the list statements for one user."""
    plans: dict[str, dict[str, Any]] = {}
    connection = await asyncpg.connect(database_url)
    try:
        for label, (statement, parameters) in LIST_STATEMENTS.items():
            sql = statement.format(schema=f'"{schema}"')
            rows = await connection.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) {sql}", user_id, *parameters
            )
            plan = "\n".join(row[0] for row in rows)
            plans[label] = {"sql": sql, "plan": plan, **plan_summary(plan)}
    finally:
        await connection.close()
    return plans


def plan_summary(plan: str) -> dict[str, Any]:
    """The node types of a text plan, outermost first, and its execution time in ms."""
    nodes = [
        line.strip().removeprefix("->").strip().split("  (")[0]
        for line in plan.splitlines()
        if "(cost=" in line
    ]
    match = re.search(r"^Execution Time: ([\d.]+) ms", plan, re.MULTILINE)
    return {"nodes": nodes, "execution_ms": float(match.group(1)) if match else None}


def writes(stack: Stack, args: argparse.Namespace, results: Results) -> None:
    print("3. Writes: POST a task through the gateway", flush=True)
    one = register(stack.gateway, "writer")
    many = [register(stack.gateway, f"writer{n}") for n in range(10)]
    # The same connections for both, so the rows differ only in how many users write.
    for label, users in (
        (f"1 user, {WRITE_CONNECTIONS} connections", [one]),
        (f"10 users at once, {WRITE_CONNECTIONS} connections", many),
    ):
        spec = ";".join(f"{user.token}|{user.tasks_path}" for user in users)
        measure(
            label,
            args.repeats,
            partial(
                run_wrk,
                stack.gateway + "/",
                "post.lua",
                connections=WRITE_CONNECTIONS,
                duration=args.duration,
                env={"USERS": spec},
            ),
            results.writes,
        )


def logins_under_load(
    stack: Stack, reader: User, args: argparse.Namespace, results: Results
) -> None:
    """Logins at full rate, while task reads go on at a moderate rate."""
    print("4. Logins at full rate while tasks are read", flush=True)
    account = register(stack.gateway, "login")
    outcome: dict[str, WrkResult] = {}

    def logins() -> None:
        outcome["logins"] = run_wrk(
            f"{stack.gateway}/auth/login",
            "login.lua",
            connections=4,
            duration=args.duration,
            env={"EMAIL": account.email, "PASSWORD": PASSWORD},
        )

    runs = []
    # argon2 allocates its memory for every hash: the login phase has its own peak.
    with MemoryPeaks(stack.processes()) as memory:
        for _ in range(args.repeats):
            thread = threading.Thread(target=logins)
            thread.start()
            reads = run_wrk(
                stack.gateway + reader.tasks_path,
                "get.lua",
                connections=MODERATE_CONNECTIONS,
                duration=args.duration,
                env={"TOKEN": reader.token, "THINK_MS": str(THINK_MS)},
            )
            thread.join()
            runs.append({"logins": outcome["logins"], "reads": reads})
    kept = best_together(runs, by="logins")
    login_run, reads = kept["logins"], kept["reads"]
    argon2 = argon2_in_use()
    results.logins = {
        "argon2": argon2,
        "argon2_vs_owasp": owasp_comparison(argon2),
        "logins": summary(login_run),
        "reads_meanwhile": summary(reads),
        "memory_peak": memory.summary(),
    }
    print(
        f"  logins {login_run.requests_per_second:.0f}/s (p50 {login_run.p50_ms:.1f} ms);"
        f" reads meanwhile p50 {reads.p50_ms:.2f} ms, p99 {reads.p99_ms:.2f} ms",
        flush=True,
    )
    print(
        f"  {argon2_description(argon2)}: {results.logins['argon2_vs_owasp']};"
        f" memory meanwhile {_memory_line(results.logins['memory_peak'])}",
        flush=True,
    )


def argon2_in_use() -> dict[str, Any]:
    """The variant and parameters of a hash made by the auth service's own settings."""
    hashed = str(password_context.hash(PASSWORD))
    match = re.match(r"^\$(argon2(?:id|i|d))\$v=\d+\$m=(\d+),t=(\d+),p=(\d+)\$", hashed)
    if match is None:
        return {"variant": hashed.split("$")[1]}
    variant, memory, passes, lanes = match.groups()
    return {
        "variant": variant,
        "memory_kib": int(memory),
        "passes": int(passes),
        "lanes": int(lanes),
    }


def owasp_comparison(argon2: dict[str, Any]) -> str:
    """How argon2 parameters compare with OWASP's minimum for argon2id.

    More memory or more passes make each guess cost more; more lanes do not (they split
    the same memory), so lanes are not compared.
    """
    minimum = OWASP_ARGON2ID_MINIMUM
    if (
        argon2["variant"] != "argon2id"
        or argon2["memory_kib"] < minimum["memory_kib"]
        or argon2["passes"] < minimum["passes"]
    ):
        return "below OWASP's minimum"
    if argon2["memory_kib"] == minimum["memory_kib"] and argon2["passes"] == minimum["passes"]:
        return "meets OWASP's minimum"
    return "stronger than OWASP's minimum"


def argon2_description(argon2: dict[str, Any]) -> str:
    if "memory_kib" not in argon2:
        return str(argon2["variant"])
    return (
        f"{argon2['variant']} m={argon2['memory_kib']} KiB, t={argon2['passes']},"
        f" p={argon2['lanes']}"
    )


def footprint_under_load(
    stack: Stack, user: User, args: argparse.Namespace
) -> dict[str, dict[str, float | None]]:
    """Peak memory of the stack's processes while the gateway is saturated."""
    with MemoryPeaks(stack.processes()) as peaks:
        run_wrk(
            stack.gateway + user.tasks_path,
            "get.lua",
            connections=SATURATION_CONNECTIONS,
            duration=args.duration,
            env={"TOKEN": user.token},
        )
    return peaks.summary()


def sqlite_start_up(results: Results) -> None:
    print("5. Footprint and start-up", flush=True)
    times = []
    for _ in range(START_UP_RUNS):
        stack = start_stack()
        times.append(stack.healthy_after)
        time.sleep(1)
        idle = memory_now(stack.processes())
        stack.stop()
    median = statistics.median(times)
    results.footprint["start_to_healthy_s_sqlite"] = round(median, 2)
    results.footprint["start_to_healthy_s_sqlite_runs"] = [round(t, 2) for t in times]
    results.footprint["memory_idle_sqlite"] = idle
    print(
        f"  python app.py to healthy /health on SQLite: median {median:.2f} s"
        f" (runs: {', '.join(f'{t:.2f}' for t in times)})",
        flush=True,
    )
    for phase in ("memory_idle_postgresql", "memory_under_load_postgresql", "memory_idle_sqlite"):
        memory = results.footprint[phase]
        print(f"  {phase:<30} {_memory_line(memory)}", flush=True)


def _memory_line(memory: dict[str, dict[str, float | None]]) -> str:
    rss, pss = memory["rss_mib"], memory["pss_mib"]
    processes = ", ".join(f"{name} {value:.0f}" for name, value in rss.items() if name != "total")
    total_pss = pss.get("total")
    shared = "" if total_pss is None else f", PSS {total_pss:.0f} MiB"
    return f"RSS {rss['total']:.0f} MiB ({processes}){shared}"


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


def check_targets(results: Results) -> list[dict[str, Any]]:
    headline = results.headline
    argon2 = results.logins["argon2_vs_owasp"]
    return [
        target(
            "gateway throughput at saturation, as a multiple of nginx's",
            headline["gateway_vs_nginx_ratio"],
            ">=",
            0.8,
            "x",
        ),
        target(
            "gateway's added p50 at moderate load (gateway p50 - direct p50)",
            headline["gateway_added_p50_ms_moderate"],
            "<=",
            1,
            " ms",
        ),
        *[
            target(
                f"p50 at 100,000 tasks / p50 at 100 tasks, ?{query}",
                headline[f"list_100k_vs_100_p50_ratio ({query})"],
                "<=",
                1.5,
                "x",
            )
            for query in SCALE_QUERIES
        ],
        target(
            "task reads' p99 while logins run at full rate",
            results.logins["reads_meanwhile"]["p99_ms"],
            "<",
            50,
            " ms",
        ),
        target(
            "python app.py to a healthy /health on SQLite, median",
            results.footprint["start_to_healthy_s_sqlite"],
            "<=",
            5,
            " s",
        ),
        {
            "target": "argon2 parameters: OWASP's minimum for argon2id or stronger",
            "measured": argon2,
            "unit": "",
            "met": not argon2.startswith("below"),
        },
    ]


def write_reports(results: Results, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(asdict(results), indent=2) + "\n")
    footprint = results.footprint
    start_up_runs = footprint["start_to_healthy_s_sqlite_runs"]
    settings = results.settings
    machine = results.machine
    tree = {True: "with uncommitted changes", False: "clean", None: "state unknown"}
    runs = "1 run" if settings["repeats"] == 1 else f"{settings['repeats']} runs"
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `python bench/run.py --duration {settings['duration_s']}"
        f" --repeats {settings['repeats']}` on {machine['date']},",
        f"at commit `{machine['git_commit']}` (working tree {tree[machine['git_dirty']]}).",
        f"Every figure is the best of {runs} of {settings['duration_s']} s (configurations",
        "interleaved; errors counted over every run), load from wrk on the same machine.",
        "",
        *(
            []
            if is_full_run(settings["duration_s"], settings["repeats"])
            else [
                "A quick run, shorter than the full settings: it checks that the harness works;",
                "its figures are not for comparing.",
                "",
            ]
        ),
        "## Targets",
        "",
        "| target | measured | result |",
        "| --- | ---: | --- |",
        *[
            f"| {row['target']} | {row['measured']}{row['unit']} |"
            f" {'met' if row['met'] else '**not met**'} |"
            for row in results.targets
        ],
        "",
        "## Machine",
        "",
        *[f"- {key}: {_plain(value)}" for key, value in machine.items()],
        "",
        "## Headline",
        "",
        *[f"- `{key}`: {value}" for key, value in results.headline.items()],
        "",
        "## 1. Gateway cost (`GET /api/{user_id}/tasks`, 20 tasks)",
        "",
        f"Moderate: {MODERATE_CONNECTIONS} connections pausing {THINK_MS} ms between requests;"
        f" saturation: {SATURATION_CONNECTIONS} connections, no pause.",
        "",
        "| load / path | req/s | p50 ms | p90 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *[_row(label, row) for label, row in results.gateway_cost.items()],
        "",
        "CPU time per request at saturation, from `utime + stime` in `/proc/<pid>/stat` read",
        "around every saturation run, divided by the requests wrk completed in them. When the",
        "task service bounds throughput, this is what shows the gateway's own cost.",
        "",
        "| path | gateway CPU ms/request | task service CPU ms/request |",
        "| --- | ---: | ---: |",
        *[
            f"| {name} | {row['gateway_cpu_ms']:.3f} | {row['tasks_cpu_ms']:.3f} |"
            for name, row in results.cpu_per_request.items()
        ],
        "",
        "## 2. List latency by data size (through the gateway, moderate load)",
        "",
        "| user's tasks, query | req/s | p50 ms | p90 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *[_row(label, row) for label, row in results.scale.items()],
        "",
        *_plans_section(results.query_plans),
        "## 3. Writes (`POST /api/{user_id}/tasks` through the gateway, PostgreSQL)",
        "",
        "| writers | req/s | p50 ms | p90 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *[_row(label, row) for label, row in results.writes.items()],
        "",
        "## 4. Logins under load",
        "",
        f"Password hashing: {argon2_description(results.logins['argon2'])}, read from a hash"
        f" made with the auth service's settings: {results.logins['argon2_vs_owasp']}"
        " (argon2id, m=19456 KiB, t=2, p=1; OWASP Password Storage Cheat Sheet).",
        "",
        "| traffic | req/s | p50 ms | p90 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        _row("logins, 4 connections at full rate", results.logins["logins"]),
        _row("task reads meanwhile (moderate)", results.logins["reads_meanwhile"]),
        "",
        "## 5. Footprint",
        "",
        "Start-up, `python app.py` to a healthy `/health` on SQLite: median"
        f" {footprint['start_to_healthy_s_sqlite']} s of {len(start_up_runs)} runs"
        f" ({', '.join(f'{t} s' for t in start_up_runs)}).",
        "",
        "Memory in MiB. RSS counts shared pages (the interpreter, libraries) once in every",
        "process; PSS divides them between the processes sharing them, so its total is the",
        "stack's real share of memory. Under load: the highest value sampled every 0.5 s",
        "(the total is the highest sum at one instant). The phases run in this order on one",
        "stack, so memory a process keeps after a phase shows in the later ones too.",
        "",
        *_memory_table(
            {
                "idle, PostgreSQL": footprint["memory_idle_postgresql"],
                "GET saturation, PostgreSQL": footprint["memory_under_load_postgresql"],
                "logins at full rate, PostgreSQL": results.logins["memory_peak"],
                "idle, SQLite": footprint["memory_idle_sqlite"],
            }
        ),
        "",
    ]
    history = BENCH / "history.md"
    if history.exists():
        lines += [history.read_text().rstrip(), ""]
    (output / "results.md").write_text("\n".join(lines))


def _plans_section(plans: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        f"Query plans at {SCALE_SIZES[-1]:,} tasks: `EXPLAIN (ANALYZE, BUFFERS)` of the statements",
        "the task service sends for these lists (`task_service/crud.py`), written out by hand",
        "as SQLAlchemy renders them and run with asyncpg after the measurements above. These",
        "are plans for the values given; a statement the service has prepared many times may",
        "use PostgreSQL's generic plan instead.",
        "",
        "| statement | plan nodes, outermost first | execution ms |",
        "| --- | --- | ---: |",
        *[
            f"| {label} | {' > '.join(plan['nodes'])} | {plan['execution_ms']:.3f} |"
            for label, plan in plans.items()
        ],
        "",
        "<details><summary>Full plans</summary>",
        "",
    ]
    for label, plan in plans.items():
        lines += [
            f"{label}:",
            "",
            "```sql",
            plan["sql"],
            "```",
            "",
            "```text",
            plan["plan"],
            "```",
            "",
        ]
    return [*lines, "</details>", ""]


def _memory_table(phases: dict[str, dict[str, dict[str, float | None]]]) -> list[str]:
    names = ["supervisord", *PROGRAMS, "total"]
    lines = [
        f"| MiB | {' | '.join(names)} |",
        f"| --- |{' ---: |' * len(names)}",
    ]
    for phase, memory in phases.items():
        for measure in ("rss", "pss"):
            values = memory[f"{measure}_mib"]
            cells = [_plain(values.get(name, "-")) for name in names]
            lines.append(f"| {phase}, {measure.upper()} | {' | '.join(cells)} |")
    return lines


def _plain(value: Any) -> str:
    """A value as a reader would write it: yes/no rather than True/False."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "unknown" if value is None else str(value)


def _row(label: str, row: dict[str, Any]) -> str:
    return (
        f"| {label} | {row['requests_per_second']:.0f} | {row['p50_ms']:.2f} |"
        f" {row['p90_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} |"
    )


def is_full_run(duration_s: int, repeats: int) -> bool:
    """Whether a run is at least as long as the one the committed results come from."""
    return duration_s >= FULL_DURATION_S and repeats >= FULL_REPEATS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=FULL_DURATION_S, help="seconds per point")
    parser.add_argument("--repeats", type=int, default=FULL_REPEATS, help="runs per point")
    parser.add_argument(
        "--output",
        type=Path,
        help="directory for results.md and results.json (default: bench/ for a full run,"
        " bench/.work/quick/ for a shorter one)",
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    args = parser.parse_args()
    output: Path = args.output or (
        BENCH if is_full_run(args.duration, args.repeats) else QUICK_OUTPUT
    )
    ensure_tools()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)

    results = Results(
        machine=machine_info(args.database_url),
        settings={"duration_s": args.duration, "repeats": args.repeats},
    )
    suffix = uuid.uuid4().hex[:8]
    stack = start_stack(
        DATABASE_URL=args.database_url,
        AUTH_DB_SCHEMA=f"bench_auth_{suffix}",
        TASK_DB_SCHEMA=f"bench_tasks_{suffix}",
    )
    try:
        results.footprint["memory_idle_postgresql"] = memory_now(stack.processes())
        reader = register(stack.gateway, "reader")
        asyncio.run(seed_tasks(args.database_url, stack.env["TASK_DB_SCHEMA"], reader.id, 20))
        gateway_cost(stack, reader, args, results)
        scale_with_data(stack, args.database_url, args, results)
        writes(stack, args, results)
        results.footprint["memory_under_load_postgresql"] = footprint_under_load(
            stack, reader, args
        )
        # After the GET saturation, so that its memory is not that argon2 left behind.
        logins_under_load(stack, reader, args, results)
    finally:
        stack.stop()
        asyncio.run(_drop_schemas(args.database_url, stack))
    sqlite_start_up(results)
    results.targets = check_targets(results)
    print("Targets", flush=True)
    for row in results.targets:
        verdict = "met" if row["met"] else "NOT MET"
        print(f"  {verdict:<8} {row['target']}: {row['measured']}{row['unit']}", flush=True)
    write_reports(results, output)
    print(f"\nWrote {output / 'results.md'} and {output / 'results.json'}")
    print(json.dumps(results.headline, indent=2))


async def _drop_schemas(url: str, stack: Stack) -> None:
    connection = await asyncpg.connect(url)
    try:
        for name in ("AUTH_DB_SCHEMA", "TASK_DB_SCHEMA"):
            await connection.execute(f'DROP SCHEMA IF EXISTS "{stack.env[name]}" CASCADE')
    finally:
        await connection.close()


if __name__ == "__main__":
    main()
