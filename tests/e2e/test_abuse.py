"""Abuse resistance of the live stack: throttling by the real client address, hostile
tokens, and secrets kept out of the logs."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx2
import pytest

from tests.e2e.conftest import Stack, postgres_stack
from tests.support.databases import rewrite_url
from tests.support.tokens import BETTER_AUTH_SECRET, bearer, mint

pytestmark = pytest.mark.postgres

DB_PASSWORD = "db-pass-Zq81xK"
USER_PASSWORD = "user-pass-Hb22vN"
SECRET_KEY = "secret-key-for-log-test-0123456789abcdefghij"


@pytest.fixture(scope="module")
def stack(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack logging at DEBUG, with tight sign-in limits and a password in DATABASE_URL."""
    with postgres_stack(
        postgres_url,
        tmp_path_factory.mktemp("abuse"),
        # The test server trusts local connections, so any password is accepted.
        DATABASE_URL=rewrite_url(postgres_url, password=DB_PASSWORD),
        SECRET_KEY=SECRET_KEY,
        AUTH_RATE_LIMIT="5/minute",
        LOG_LEVEL="DEBUG",
    ) as running:
        yield running


def _login(client: httpx2.Client, forwarded_for: str) -> int:
    response = client.post(
        "/auth/login",
        json={"email": "nobody@example.com", "password": "whatever1"},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return response.status_code


def test_limits_follow_the_client_address_the_trusted_proxy_reports(stack: Stack) -> None:
    with stack.client() as client:
        first = [_login(client, "203.0.113.7") for _ in range(6)]
        other = _login(client, "203.0.113.8")

    assert first == [401] * 5 + [429]
    assert other == 401


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(mint(SECRET_KEY, sub="u1", padding="p" * 9000), id="oversized"),
        pytest.param(mint(SECRET_KEY, sub="u1", iat=int(time.time()) + 3600), id="future-iat"),
        pytest.param(mint(SECRET_KEY, sub="u1", headers={"typ": "refresh"}), id="wrong-typ"),
        pytest.param(mint(SECRET_KEY, sub="u1", type="refresh"), id="refresh-type"),
    ],
)
def test_hostile_tokens_are_refused_by_both_services(stack: Stack, token: str) -> None:
    with stack.client() as client:
        tasks = client.get("/api/u1/tasks", headers=bearer(token))
        me = client.get("/api/users/me", headers=bearer(token))

    assert tasks.status_code == me.status_code == 401
    assert tasks.headers["www-authenticate"].startswith("Bearer")


def test_no_secret_reaches_the_logs_through_a_full_flow(stack: Stack) -> None:
    secrets: list[str] = [DB_PASSWORD, USER_PASSWORD, SECRET_KEY, BETTER_AUTH_SECRET]
    with stack.client() as client:
        headers = {"X-Forwarded-For": "198.51.100.77"}
        registered = client.post(
            "/auth/register",
            json={"email": "logs@example.com", "password": USER_PASSWORD},
            headers=headers,
        ).json()
        login = client.post(
            "/auth/login",
            json={"email": "logs@example.com", "password": USER_PASSWORD},
            headers=headers,
        ).json()
        wrong = client.post(
            "/auth/login",
            json={"email": "logs@example.com", "password": "wrong-pass-Qm5"},
            headers=headers,
        )
        refreshed = client.post(
            "/auth/refresh", json={"refresh_token": login["refresh_token"]}, headers=headers
        ).json()
        auth = bearer(refreshed["access_token"])
        tasks = f"/api/{registered['user']['id']}/tasks"
        created = client.post(tasks, headers=auth, json={"title": "private"}).json()
        client.patch(f"{tasks}/{created['id']}", headers=auth)
        client.get(tasks, headers=auth, params={"q": "priv"})
        client.get("/api/users/me", headers=auth)
        frontend = mint(BETTER_AUTH_SECRET, sub="frontend-user", type=None)
        client.get("/api/frontend-user/tasks", headers=bearer(frontend))
        client.post(
            "/auth/logout", json={"refresh_token": refreshed["refresh_token"]}, headers=headers
        )
        secrets += [
            registered["access_token"],
            registered["refresh_token"],
            login["access_token"],
            login["refresh_token"],
            refreshed["access_token"],
            refreshed["refresh_token"],
            frontend,
            "wrong-pass-Qm5",
        ]

    assert wrong.status_code == 401
    # Wait until the flow's last request is in the log: supervisord copies output late.
    logout = "access: POST /auth/logout 204"
    log = stack.log_once(lambda text: text.count(logout) >= 2)
    assert log.count(logout) == 2, "the gateway's and the auth service's lines"
    leaked = [secret[:12] + "..." for secret in secrets if secret in log]
    assert leaked == []
    # Token signatures alone would be enough to replay nothing, but no bearer header may
    # appear either.
    assert "Bearer " not in log
    assert "authorization" not in log.lower()
