"""What a started process holds: it serves for as long as it runs, and every module it has
imported stays in its memory. Libraries needed only by some deployments, or only once,
are imported where they are used (bench/history.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Alembic and Mako: the schema upgrade, in a process of its own. PyJWT and cryptography:
# Better Auth's published keys only. Redis: a shared rate-limit store only. httpx2: the
# JWKS client only. websockets: the WebSocket database transport only. pydantic.v1:
# FastAPI's check for v1 models only (shared/app.py).
NOT_LOADED = {
    "alembic",
    "mako",
    "jwt",
    "cryptography",
    "redis",
    "httpx2",
    "websockets",
    "pydantic.v1",
}

_STARTED = """
import asyncio, sys
from {package}.app import create_app
from {package}.settings import {settings}

async def main():
    app = create_app({settings}({arguments}))
    async with app.router.lifespan_context(app):
        pass
    print(" ".join(sorted(name for name, module in sys.modules.items() if module)))

asyncio.run(main())
"""


def _loaded_once_started(package: str, settings: str, data_dir: Path, *extra: str) -> set[str]:
    """The modules and top-level packages a process of `package` holds once started, on
    SQLite with nothing optional configured but `extra` settings (`name=value` source)."""
    arguments = ", ".join(["_env_file=None", f"data_dir={str(data_dir)!r}", *extra])
    script = _STARTED.format(package=package, settings=settings, arguments=arguments)
    result = subprocess.run(  # noqa: S603 (the interpreter running the tests)
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # The last line: the schema upgrade's process logs to the same output before it.
    modules = set(result.stdout.splitlines()[-1].split())
    return modules | {name.split(".")[0] for name in modules}


@pytest.mark.parametrize(
    ("package", "settings"),
    [
        ("auth_service", "AuthSettings"),
        ("task_service", "TaskSettings"),
        ("gateway", "GatewaySettings"),
    ],
)
def test_a_started_process_holds_only_what_its_settings_need(
    tmp_path: Path, package: str, settings: str
) -> None:
    loaded = _loaded_once_started(package, settings, tmp_path)

    assert "fastapi" in loaded
    assert loaded & NOT_LOADED == set()


def test_better_auths_keys_bring_pyjwt_and_its_http_client(tmp_path: Path) -> None:
    jwks = "better_auth_jwks_url='http://127.0.0.1:9/api/auth/jwks'"
    loaded = _loaded_once_started("task_service", "TaskSettings", tmp_path, jwks)

    assert {"jwt", "cryptography", "httpx2"} <= loaded
