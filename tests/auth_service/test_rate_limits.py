"""Throttling of register, login and refresh; per client IP, and per account and IP."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis.asyncio
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url

from auth_service.app import create_app
from tests.auth_service.conftest import auth_settings
from tests.support.databases import Backend
from tests.support.http_server import free_port
from tests.support.tcp_proxy import TcpProxy

Clients = Callable[..., AbstractAsyncContextManager[Callable[[str], httpx2.AsyncClient]]]


@pytest.fixture
def limited_app(tmp_path: Path) -> Clients:
    """An auth app with the given limits; yields a factory of clients seen from an IP."""

    @asynccontextmanager
    async def start(**limits: Any) -> AsyncIterator[Callable[[str], httpx2.AsyncClient]]:
        app = create_app(auth_settings(Backend("sqlite", None, tmp_path), **limits))

        def client(ip: str) -> httpx2.AsyncClient:
            transport = httpx2.ASGITransport(app=app, client=(ip, 40000))
            return httpx2.AsyncClient(transport=transport, base_url="http://auth.test")

        async with LifespanManager(app):
            yield client

    return start


def _email() -> str:
    return f"u{uuid.uuid4().hex[:12]}@example.com"


@asynccontextmanager
async def _failure_limited(
    limited_app: Clients, ip: str
) -> AsyncIterator[tuple[httpx2.AsyncClient, str, httpx2.Response]]:
    """A client at `ip` of an app allowing two failed sign-ins per account and client, with
    the account it registered (password "correct horse"): its email and the answer."""
    email = _email()
    async with (
        limited_app(login_failure_limit="2/15 minutes") as client_from,
        client_from(ip) as client,
    ):
        registered = await client.post(
            "/auth/register", json={"email": email, "password": "correct horse"}
        )
        yield client, email, registered


async def test_a_client_over_the_limit_gets_429_with_retry_after(limited_app: Clients) -> None:
    async with (
        limited_app(auth_rate_limit="3/minute") as client_from,
        client_from("198.51.100.1") as client,
    ):
        responses = [
            await client.post("/auth/login", json={"email": _email(), "password": "x"})
            for _ in range(4)
        ]

    assert [r.status_code for r in responses] == [401, 401, 401, 429]
    limited = responses[-1]
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60


async def test_register_login_and_refresh_share_the_clients_budget(
    limited_app: Clients,
) -> None:
    async with (
        limited_app(auth_rate_limit="2/minute") as client_from,
        client_from("198.51.100.2") as client,
    ):
        register = await client.post(
            "/auth/register", json={"email": _email(), "password": "correct horse"}
        )
        refresh = await client.post(
            "/auth/refresh", json={"refresh_token": register.json()["refresh_token"]}
        )
        login = await client.post("/auth/login", json={"email": _email(), "password": "x"})

    assert (register.status_code, refresh.status_code, login.status_code) == (201, 200, 429)


async def test_the_token_endpoint_spends_the_same_budget_as_login(
    limited_app: Clients,
) -> None:
    async with (
        limited_app(auth_rate_limit="1/minute") as client_from,
        client_from("198.51.100.12") as client,
    ):
        await client.post("/auth/login", json={"email": _email(), "password": "x"})
        token = await client.post("/auth/token", data={"username": _email(), "password": "x"})

    assert token.status_code == 429
    assert token.json()["code"] == "rate_limited"


async def test_failed_sign_ins_count_alike_on_login_and_token(limited_app: Clients) -> None:
    async with _failure_limited(limited_app, "203.0.113.67") as (client, email, _):
        await client.post("/auth/login", json={"email": email, "password": "guess"})
        await client.post("/auth/token", data={"username": email, "password": "guess"})
        locked = [
            await client.post("/auth/login", json={"email": email, "password": "correct horse"}),
            await client.post("/auth/token", data={"username": email, "password": "correct horse"}),
        ]

    assert [r.status_code for r in locked] == [429, 429]


async def test_wrong_current_passwords_count_towards_the_failure_limit(
    limited_app: Clients,
) -> None:
    async with _failure_limited(limited_app, "203.0.113.68") as (client, email, registered):
        headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
        wrong = {"current_password": "guess", "new_password": "battery staple"}
        tries = [await client.post("/auth/password", json=wrong, headers=headers) for _ in range(2)]
        locked = await client.post(
            "/auth/login", json={"email": email, "password": "correct horse"}
        )

    assert [r.status_code for r in tries] == [401, 401]
    assert locked.status_code == 429


async def test_other_clients_and_other_routes_are_not_affected(limited_app: Clients) -> None:
    async with (
        limited_app(auth_rate_limit="1/minute") as client_from,
        client_from("198.51.100.3") as first,
        client_from("198.51.100.4") as second,
    ):
        await first.post("/auth/login", json={"email": _email(), "password": "x"})
        blocked = await first.post("/auth/login", json={"email": _email(), "password": "x"})
        other_ip = await second.post("/auth/login", json={"email": _email(), "password": "x"})
        health = await first.get("/health")
        me = await first.get("/api/users/me")

    assert blocked.status_code == 429
    assert other_ip.status_code == 401
    assert health.status_code == 200
    assert me.status_code == 401


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        ("2001:db8:1:2::10", "2001:db8:1:2:ffff::1", True),
        ("2001:db8:1:2::10", "2001:db8:1:3::10", False),
        ("::ffff:198.51.100.7", "198.51.100.7", True),
        ("198.51.100.8", "198.51.100.9", False),
    ],
)
async def test_ipv6_clients_are_counted_per_64_network(
    limited_app: Clients, first: str, second: str, *, shared: bool
) -> None:
    async with limited_app(auth_rate_limit="2/minute") as client_from:
        for _ in range(2):
            async with client_from(first) as client:
                await client.post("/auth/login", json={"email": _email(), "password": "x"})
        async with client_from(second) as client:
            response = await client.post("/auth/login", json={"email": _email(), "password": "x"})

    assert response.status_code == (429 if shared else 401)


async def test_repeated_failures_lock_the_account_for_that_client_only(
    limited_app: Clients,
) -> None:
    email = _email()
    async with (
        limited_app(login_failure_limit="2/15 minutes") as client_from,
        client_from("203.0.113.66") as attacker,
        client_from("192.0.2.10") as owner,
    ):
        await owner.post("/auth/register", json={"email": email, "password": "correct horse"})
        failures = [
            await attacker.post("/auth/login", json={"email": email, "password": "guess"})
            for _ in range(2)
        ]
        locked = await attacker.post(
            "/auth/login", json={"email": email, "password": "correct horse"}
        )
        other_account = await attacker.post(
            "/auth/login", json={"email": _email(), "password": "guess"}
        )
        owner_login = await owner.post(
            "/auth/login", json={"email": email, "password": "correct horse"}
        )

    assert [r.status_code for r in failures] == [401, 401]
    # Even the right password is refused from the attacking client...
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 60
    assert other_account.status_code == 401
    # ...while the owner, elsewhere, signs in as usual.
    assert owner_login.status_code == 200


async def test_a_successful_login_clears_earlier_failures(limited_app: Clients) -> None:
    async with _failure_limited(limited_app, "192.0.2.20") as (client, email, _):
        await client.post("/auth/login", json={"email": email, "password": "typo"})
        await client.post("/auth/login", json={"email": email, "password": "correct horse"})
        after = [
            (
                await client.post("/auth/login", json={"email": email, "password": "typo"})
            ).status_code
            for _ in range(2)
        ]

    assert after == [401, 401]


@pytest.fixture(params=["memory", "redis"])
def storage_url(request: pytest.FixtureRequest) -> str | None:
    """Each test that uses this runs with counters in memory, then in Redis."""
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


async def test_concurrent_guesses_get_no_more_401s_than_the_failure_limit(
    limited_app: Clients, storage_url: str | None
) -> None:
    email = _email()
    async with (
        limited_app(
            login_failure_limit="5/15 minutes", rate_limit_storage_url=storage_url
        ) as client_from,
        client_from(f"203.0.113.{uuid.uuid4().int % 200 + 20}") as client,
    ):
        await client.post("/auth/register", json={"email": email, "password": "correct horse"})
        # Password checks take long enough that every guess is in flight at once.
        responses = await asyncio.gather(
            *(
                client.post("/auth/login", json={"email": email, "password": f"guess {n}"})
                for n in range(30)
            )
        )

    assert Counter(r.status_code for r in responses) == {401: 5, 429: 25}


async def test_counters_in_redis_are_shared_between_instances(
    tmp_path: Path, redis_url: str
) -> None:
    ip = f"198.51.100.{uuid.uuid4().int % 200 + 20}-{uuid.uuid4().hex[:6]}"
    backend = Backend("sqlite", None, tmp_path)
    apps = [
        create_app(
            auth_settings(backend, auth_rate_limit="3/minute", rate_limit_storage_url=redis_url)
        )
        for _ in range(2)
    ]
    codes = []
    async with LifespanManager(apps[0]), LifespanManager(apps[1]):
        for n in range(4):
            transport = httpx2.ASGITransport(app=apps[n % 2], client=(ip, 40000))
            async with httpx2.AsyncClient(transport=transport, base_url="http://a") as client:
                response = await client.post(
                    "/auth/login", json={"email": _email(), "password": "x"}
                )
                codes.append(response.status_code)

    assert codes == [401, 401, 401, 429]


async def test_redis_keys_name_no_email(tmp_path: Path, redis_url: str) -> None:
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    backend = Backend("sqlite", None, tmp_path)
    app = create_app(auth_settings(backend, rate_limit_storage_url=redis_url))
    store = redis.asyncio.from_url(redis_url)
    try:
        async with LifespanManager(app):
            transport = httpx2.ASGITransport(app=app, client=("198.51.100.30", 40000))
            async with httpx2.AsyncClient(transport=transport, base_url="http://a") as client:
                response = await client.post(
                    "/auth/login", json={"email": email, "password": "wrong password"}
                )
        keys = [key.decode() async for key in store.scan_iter(match="*login-failure*")]
    finally:
        await store.aclose()

    assert response.status_code == 401
    assert keys, "the failed login was not counted in Redis"
    assert not [key for key in keys if email in key or email.split("@", maxsplit=1)[0] in key]


async def test_an_unreachable_redis_lets_requests_through(
    limited_app: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    async with (
        limited_app(auth_rate_limit="1/minute", rate_limit_storage_url=unreachable) as client_from,
        client_from("198.51.100.9") as client,
    ):
        responses = [
            await client.post("/auth/login", json={"email": _email(), "password": "x"})
            for _ in range(3)
        ]

    assert [r.status_code for r in responses] == [401, 401, 401]
    assert "Rate limit storage unavailable" in caplog.text


# A pause long enough for the four logins after the first timeout to fall inside it even on
# a loaded machine, short enough to wait out.
STORAGE_RETRY_SECONDS = 3.0


def _storage_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "Rate limit storage unavailable" in r.getMessage()]


async def test_a_hung_redis_is_skipped_for_a_while_instead_of_slowing_every_login(
    limited_app: Clients,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = make_url(redis_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 6379)
    await proxy.start()
    through_proxy = target.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    try:
        async with (
            limited_app(
                auth_rate_limit="3/minute",
                rate_limit_storage_url=through_proxy,
                rate_limit_storage_timeout=0.5,
                rate_limit_storage_retry_seconds=STORAGE_RETRY_SECONDS,
            ) as client_from,
            client_from(f"198.51.100.{uuid.uuid4().int % 200 + 20}") as client,
        ):

            async def login() -> int:
                response = await client.post(
                    "/auth/login", json={"email": _email(), "password": "x"}
                )
                return response.status_code

            before = await login()
            proxy.stall()
            started = time.monotonic()
            during = [await login() for _ in range(5)]
            elapsed = time.monotonic() - started
            proxy.resume()
            # The storage is tried again once the pause that began with the logged failure
            # is over.
            failed_at = min((r.created for r in _storage_failures(caplog)), default=time.time())
            await asyncio.sleep(failed_at + STORAGE_RETRY_SECONDS + 0.1 - time.time())
            after = [await login() for _ in range(3)]
    finally:
        await proxy.cut()

    assert before == 401
    # Let through, not locked out. Without the pause every storage call of every login
    # waited out the socket timeout (5 s here); with it only the first does.
    assert during == [401] * 5
    assert elapsed < 4
    assert len(_storage_failures(caplog)) == 1
    # Counting resumed: the client is over its three requests a minute again.
    assert 429 in after


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("auth_rate_limit", "lots"),
        ("auth_rate_limit", "0/minute"),
        ("login_failure_limit", "5 per fortnight"),
        ("rate_limit_storage_url", "memcached://x"),
    ],
)
def test_bad_limit_settings_are_refused(tmp_path: Path, field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        auth_settings(Backend("sqlite", None, tmp_path), **{field: value})
