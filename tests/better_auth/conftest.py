"""A real Better Auth server (npm `better-auth`, email and password, PostgreSQL, JWT plugin),
and the whole API behind the gateway configured to trust it, all over real sockets.

The server's packages install from the committed lock file (`npm ci`) the first time, into
`server/node_modules`: plain JavaScript, no native module to build. Each server keeps its
users and keys in a database of its own on the test PostgreSQL (TEST_DATABASE_URL), dropped
when it stops. Without `node` or PostgreSQL these tests are skipped, except under CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx2
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr

from auth_service.app import create_app as create_auth_app
from auth_service.settings import AuthSettings
from gateway.app import create_app as create_gateway_app
from gateway.settings import GatewaySettings
from task_service.app import create_app as create_task_app
from task_service.settings import TaskSettings
from tests.conftest import IN_CI
from tests.support.http_server import free_port, serve
from tests.support.tokens import SECRET_KEY

SERVER_DIR = Path(__file__).parent / "server"
NPM_CI_TIMEOUT = 600
START_TIMEOUT = 60.0
BETTER_AUTH_SECRET = "better-auth-test-secret-0123456789abcdef-0123"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def better_auth_installed() -> None:
    """`node` is there and the server's packages are installed (from the lock file)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if IN_CI:
            pytest.fail("CI=true but node/npm are missing: the Better Auth suite must run")
        pytest.skip("node is not installed; the real Better Auth suite is skipped")
    if (SERVER_DIR / "node_modules" / "better-auth").is_dir():
        return
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],  # noqa: S607 (npm from PATH, as a user runs it)
        cwd=SERVER_DIR,
        capture_output=True,
        text=True,
        timeout=NPM_CI_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"npm ci failed in {SERVER_DIR}:\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
        )


@dataclass
class BetterAuthServer:
    """One running Better Auth instance (its own keys and users)."""

    process: subprocess.Popen[str]
    port: int
    log_path: Path
    users: int = field(default=0)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/api/auth/jwks"

    async def sign_up(self, name: str = "Bea") -> tuple[str, dict[str, Any]]:
        """A new user signed up and in; the JWT of /api/auth/token and the user."""
        self.users += 1
        email = f"user{self.users}-{time.monotonic_ns()}@example.com"
        # Better Auth checks the Origin of cookie-carrying requests: send the app's own.
        headers = {"Origin": self.base_url}
        async with httpx2.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=10
        ) as client:
            signed_up = await client.post(
                "/api/auth/sign-up/email", json={"email": email, "password": PASSWORD, "name": name}
            )
            assert signed_up.status_code == 200, signed_up.text
            return await self._token(client), signed_up.json()["user"]

    async def sign_in(self, email: str) -> str:
        headers = {"Origin": self.base_url}
        async with httpx2.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=10
        ) as client:
            signed_in = await client.post(
                "/api/auth/sign-in/email", json={"email": email, "password": PASSWORD}
            )
            assert signed_in.status_code == 200, signed_in.text
            return await self._token(client)

    @staticmethod
    async def _token(client: httpx2.AsyncClient) -> str:
        # The session cookie of the sign-up/in rides along in the client's cookie jar.
        response = await client.get("/api/auth/token")
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _on_postgres(url: str, statement: str) -> None:
    """Run one statement on the server at `url`, from sync code that may be inside a loop."""

    async def run() -> None:
        connection = await asyncpg.connect(url, timeout=10)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, run()).result()


@contextlib.contextmanager
def own_database(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the server of `postgres_url`, dropped afterwards: its URL."""
    name = f"better_auth_{uuid.uuid4().hex[:12]}"
    _on_postgres(postgres_url, f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(postgres_url)._replace(path=f"/{name}").geturl()
    finally:
        _on_postgres(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def better_auth_server(
    directory: Path,
    postgres_url: str,
    *,
    algorithm: str = "EdDSA",
    rotation_seconds: int | None = None,
) -> Iterator[BetterAuthServer]:
    """Start `node server.mjs` on a free port with a database of its own; stop it afterwards."""
    with (
        own_database(postgres_url) as database_url,
        _running(directory, database_url, algorithm, rotation_seconds) as server,
    ):
        yield server


@contextlib.contextmanager
def _running(
    directory: Path, database_url: str, algorithm: str, rotation_seconds: int | None
) -> Iterator[BetterAuthServer]:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(directory)),
        "PORT": str(port),
        "DATABASE_URL": database_url,
        "BETTER_AUTH_SECRET": BETTER_AUTH_SECRET,
        "JWT_ALG": algorithm,
    }
    if rotation_seconds is not None:
        env["ROTATION_SECONDS"] = str(rotation_seconds)
    log_path = directory / f"better-auth-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            ["node", "server.mjs"],  # noqa: S607 (node from PATH)
            cwd=SERVER_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    server = BetterAuthServer(process, port, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "listening" not in server.log():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"Better Auth did not start:\n{server.log()[-4000:]}")
            time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.asynccontextmanager
async def api_trusting(directory: Path, **token_settings: Any) -> AsyncIterator[str]:
    """Both services and the gateway, each on its own port, with these token settings
    (`better_auth_jwks_url`, `better_auth_issuer`, ...); yields the gateway's URL."""
    common: dict[str, Any] = {
        "_env_file": None,
        "data_dir": directory / f"data-{free_port()}",
        "secret_key": SecretStr(SECRET_KEY),
        **token_settings,
    }
    auth = create_auth_app(AuthSettings(**common))
    tasks = create_task_app(TaskSettings(**common))
    async with (
        LifespanManager(auth),
        LifespanManager(tasks),
        serve(auth) as auth_url,
        serve(tasks) as tasks_url,
    ):
        gateway = create_gateway_app(
            GatewaySettings(_env_file=None, auth_service_url=auth_url, task_service_url=tasks_url)
        )
        async with LifespanManager(gateway), serve(gateway) as gateway_url:
            yield gateway_url
