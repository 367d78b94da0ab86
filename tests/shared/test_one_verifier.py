"""Both services build their verifier from the same settings, so they accept the same tokens."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from auth_service.app import create_app as create_auth_app
from auth_service.settings import AuthSettings
from shared.deps import service_state
from shared.tokens import InvalidTokenError, Principal, TokenVerifier
from task_service.app import create_app as create_task_app
from task_service.settings import TaskSettings
from tests.support.tokens import BETTER_AUTH_SECRET, SECRET_KEY, mint

TOKENS: list[tuple[str, Callable[[], str]]] = [
    ("own", lambda: mint(sub="u-1")),
    ("own-id-only", lambda: mint(sub=None, id="u-1")),
    ("frontend-sub", lambda: mint(BETTER_AUTH_SECRET, sub="u-1", type=None)),
    ("frontend-id", lambda: mint(BETTER_AUTH_SECRET, sub=None, id="u-1", type=None)),
    ("frontend-userid", lambda: mint(BETTER_AUTH_SECRET, sub=None, userId="u-1", type=None)),
    ("frontend-refresh", lambda: mint(BETTER_AUTH_SECRET, sub="u-1", type="refresh")),
    ("expired", lambda: mint(sub="u-1", lifetime=-120)),
    ("future", lambda: mint(sub="u-1", iat=int(time.time()) + 3600)),
]


async def _outcome(verifier: TokenVerifier, token: str) -> Principal | str:
    try:
        principal = await verifier.verify(token)
    except InvalidTokenError as exc:
        return str(exc)
    return Principal(principal.user_id, {}, principal.source)


@pytest.mark.parametrize("make", [m for _, m in TOKENS], ids=[n for n, _ in TOKENS])
async def test_auth_and_task_services_agree_on_every_token(
    tmp_path: Path, make: Callable[[], str]
) -> None:
    common: dict[str, Any] = {
        "_env_file": None,
        "data_dir": tmp_path,
        "secret_key": SecretStr(SECRET_KEY),
        "better_auth_secret": SecretStr(BETTER_AUTH_SECRET),
        "better_auth_jwks_url": "https://frontend.example/api/auth/jwks",
    }
    auth = service_state(create_auth_app(AuthSettings(**common)))
    tasks = service_state(create_task_app(TaskSettings(**common)))
    token = make()

    try:
        assert await _outcome(auth.verifier, token) == await _outcome(tasks.verifier, token)
    finally:
        await auth.aclose()
        await tasks.aclose()
