"""nginx beside the stack: a reverse proxy in front of an upstream, and a static upstream."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

from bench.config import ROOT, WORK
from tests.support.http_server import free_port

# Tools the benchmark runs, and the Debian package of each.
TOOLS = {"wrk": "wrk", "nginx": "nginx-light"}


class ServerError(RuntimeError):
    """A server the benchmark started did not answer."""


@dataclass(frozen=True)
class Server:
    """A server the benchmark runs: where it listens and its (main) process."""

    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def missing_tools() -> list[str]:
    """What to install before a run, as a sentence, one entry per missing tool."""
    return [
        f"{tool} (Debian package {package})"
        for tool, package in TOOLS.items()
        if shutil.which(tool) is None
    ]


def _config(prefix: Path, port: int, upstream: str, location: str, extra: str) -> str:
    return f"""daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{upstream}
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 1000000;
{extra}
        location / {{
{location}
        }}
    }}
}}
"""


@contextmanager
def _nginx(name: str, upstream: str, location: str, extra: str = "") -> Iterator[Server]:
    port = free_port()
    prefix = WORK / f"nginx-{name}-{port}"
    prefix.mkdir(parents=True)
    config = prefix / "nginx.conf"
    config.write_text(_config(prefix, port, upstream, location, extra))
    stderr = prefix / "stderr.log"
    with stderr.open("wb") as stderr_file:
        process = subprocess.Popen(
            ["nginx", "-p", str(prefix), "-c", str(config)], stderr=stderr_file
        )
    server = Server(port, process.pid)
    try:
        if not answers(server.url, process):
            error_log = prefix / "error.log"
            details = stderr.read_text() + (error_log.read_text() if error_log.exists() else "")
            raise ServerError(
                f"nginx did not answer on {server.url}:\n{details.strip() or '(none)'}"
            )
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)


def nginx_in_front_of(upstream_port: int) -> AbstractContextManager[Server]:
    """nginx as a reverse proxy with upstream keep-alive."""
    upstream = f"""    upstream backend {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}"""
    location = """            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"""
    return _nginx("proxy", upstream, location)


def static_upstream(body_path: Path) -> AbstractContextManager[Server]:
    """nginx answering every GET with one JSON file."""
    location = f"""            default_type application/json;
            root {body_path.parent};
            rewrite ^ /{body_path.name} break;"""
    # What a service's /health answers, so that the gateway in front counts it healthy.
    health = """        location = /health {
            default_type application/json;
            return 200 '{"status":"ok"}';
        }"""
    return _nginx("static", "", location, health)


@contextmanager
def uvicorn_app(name: str, app: str, env: dict[str, str]) -> Iterator[Server]:
    """`python -m uvicorn app` on a free port, on the server the stack runs its services on
    (supervisord.conf): what a reference measures against a service is then the app alone."""
    port = free_port()
    log = WORK / f"{name}-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        *(sys.executable, "-m", "uvicorn", app, "--http", "shared.server:Protocol", "--ws", "none"),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [*command, "--no-access-log"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Server(port, process.pid)
    try:
        if not answers(server.url, process):
            raise ServerError(f"{name} did not answer on {server.url}:\n{log.read_text().strip()}")
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)


def answers(url: str, process: subprocess.Popen[bytes], within: float = 10) -> bool:
    """True once the server answers any HTTP request; False if it exits or never does."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx2.get(f"{url}/health", timeout=1)
            return True
        except httpx2.HTTPError:
            time.sleep(0.05)
    return False
