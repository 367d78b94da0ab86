"""TLS to a hosted PostgreSQL as libpq does it, against the suite's TLS-only, SCRAM-only
cluster: every sslmode, sslrootcert (a path or the system store) and channel_binding."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.database_startup import DatabaseStartupError, wait_for_database
from shared.database_url import DatabaseConfig, parse_database_url
from shared.db import Database, create_database
from tests.support.pg_cluster import PLAIN_USER, HostedPostgres

Open = Callable[..., Awaitable[Database]]


@pytest.fixture
async def open_database(tmp_path: Path) -> AsyncIterator[Open]:
    """Engines on given URLs, disposed of after the test."""
    opened: list[Database] = []

    async def open_(url: str, **options: object) -> Database:
        config = DatabaseConfig(parse_database_url(url), data_dir=tmp_path, **options)  # type: ignore[arg-type]
        database = create_database(config, schema="public", name="check")
        opened.append(database)
        return database

    yield open_
    for database in opened:
        await database.dispose()


async def _uses_tls(database: Database) -> bool:
    async with database.engine.connect() as connection:
        result = await connection.execute(
            text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        )
        return bool(result.scalar_one())


async def _refusal(database: Database) -> str:
    """The one line start-up stops with, which must come at once (no retrying)."""
    started = time.monotonic()
    with pytest.raises(DatabaseStartupError) as stopped:
        await wait_for_database(database, database.ping, wait_seconds=30)
    assert time.monotonic() - started < 5, "a configuration error was retried"
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith("Database configuration error: ")
    return message


@pytest.fixture(autouse=True)
def _no_default_root_certificate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # libpq's fallbacks (PGSSLROOTCERT, ~/.postgresql/root.crt) must not decide a test.
    monkeypatch.delenv("PGSSLROOTCERT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


async def test_disable_connects_in_clear(
    hosted_postgres: HostedPostgres, open_database: Open
) -> None:
    database = await open_database(hosted_postgres.url(user=PLAIN_USER, sslmode="disable"))

    assert await _uses_tls(database) is False


async def test_disable_against_a_tls_only_server_stops_at_once_naming_sslmode(
    hosted_postgres: HostedPostgres, open_database: Open
) -> None:
    database = await open_database(hosted_postgres.url(sslmode="disable"))

    message = await _refusal(database)

    assert "no encryption" in message
    assert "sslmode" in message


@pytest.mark.parametrize(("user", "tls"), [(PLAIN_USER, False), ("todo", True)])
async def test_allow_tries_clear_text_first_then_tls(
    hosted_postgres: HostedPostgres, open_database: Open, user: str, tls: bool
) -> None:
    database = await open_database(hosted_postgres.url(user=user, sslmode="allow"))

    assert await _uses_tls(database) is tls


@pytest.mark.parametrize(("user", "tls"), [(PLAIN_USER, False), ("todo", True)])
async def test_prefer_is_the_default_and_tries_tls_first(
    hosted_postgres: HostedPostgres, open_database: Open, user: str, tls: bool
) -> None:
    explicit = await open_database(hosted_postgres.url(user=user, sslmode="prefer"))
    default = await open_database(hosted_postgres.url(user=user))

    assert await _uses_tls(explicit) is tls
    assert await _uses_tls(default) is tls


async def test_require_encrypts_without_checking_the_certificate(
    hosted_postgres: HostedPostgres, open_database: Open
) -> None:
    # The cluster's CA is trusted nowhere, and 127.0.0.1 is not the certificate's name.
    database = await open_database(hosted_postgres.url(host="127.0.0.1", sslmode="require"))

    assert await _uses_tls(database) is True


# With a root certificate, require checks the chain as libpq does, as verify-ca does; neither
# checks the host name.
@pytest.mark.parametrize(
    ("mode", "named"),
    [("require", ["certificate", "sslrootcert"]), ("verify-ca", ["certificate"])],
    ids=["require", "verify-ca"],
)
async def test_a_root_certificate_checks_the_chain_but_not_the_host_name(
    hosted_postgres: HostedPostgres, open_database: Open, mode: str, named: list[str]
) -> None:
    certs = hosted_postgres.certs
    trusted = await open_database(
        hosted_postgres.url(host="127.0.0.1", sslmode=mode, sslrootcert=str(certs.ca))
    )
    untrusted = await open_database(
        hosted_postgres.url(sslmode=mode, sslrootcert=str(certs.other_ca))
    )

    assert await _uses_tls(trusted) is True
    message = await _refusal(untrusted)
    for word in named:
        assert word in message


async def test_verify_full_checks_the_host_name_too(
    hosted_postgres: HostedPostgres, open_database: Open
) -> None:
    certs = hosted_postgres.certs
    by_name = await open_database(
        hosted_postgres.url(sslmode="verify-full", sslrootcert=str(certs.ca))
    )
    by_address = await open_database(
        hosted_postgres.url(host="127.0.0.1", sslmode="verify-full", sslrootcert=str(certs.ca))
    )

    assert await _uses_tls(by_name) is True
    message = await _refusal(by_address)
    assert "127.0.0.1" in message
    assert "sslrootcert" in message


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
async def test_verifying_without_a_root_certificate_says_which_setting_to_add(
    hosted_postgres: HostedPostgres, open_database: Open, mode: str
) -> None:
    database = await open_database(hosted_postgres.url(sslmode=mode))

    message = await _refusal(database)

    assert "sslrootcert=" in message


async def test_a_missing_root_certificate_file_is_named(
    hosted_postgres: HostedPostgres, open_database: Open, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "root.crt"
    database = await open_database(
        hosted_postgres.url(sslmode="verify-full", sslrootcert=str(missing))
    )

    message = await _refusal(database)

    assert str(missing) in message
    assert "sslrootcert" in message


async def test_sslrootcert_system_uses_the_system_trust_store(
    hosted_postgres: HostedPostgres, open_database: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenSSL's system store honours SSL_CERT_FILE: here it holds the cluster's CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(hosted_postgres.certs.ca))
    implicit = await open_database(hosted_postgres.url(sslrootcert="system"))
    explicit = await open_database(hosted_postgres.url(sslmode="verify-full", sslrootcert="system"))
    by_address = await open_database(hosted_postgres.url(host="127.0.0.1", sslrootcert="system"))

    assert await _uses_tls(implicit) is True
    assert await _uses_tls(explicit) is True
    assert "127.0.0.1" in await _refusal(by_address)


async def test_sslrootcert_system_refuses_a_weaker_sslmode_as_libpq_does(
    hosted_postgres: HostedPostgres, open_database: Open
) -> None:
    database = await open_database(hosted_postgres.url(sslmode="require", sslrootcert="system"))

    assert "sslmode=verify-full" in await _refusal(database)


async def test_channel_binding_require_verifies_against_the_system_store(
    hosted_postgres: HostedPostgres,
    open_database: Open,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("SSL_CERT_FILE", str(hosted_postgres.certs.ca))
    # What Neon's console prints.
    url = hosted_postgres.url(sslmode="require", channel_binding="require")
    database = await open_database(url)

    assert await _uses_tls(database) is True
    lines = [r.getMessage() for r in caplog.records if "channel_binding" in r.getMessage()]
    assert len(lines) == 1
    assert "system trust store" in lines[0]


async def test_channel_binding_require_fails_in_one_line_when_verification_fails(
    hosted_postgres: HostedPostgres, open_database: Open, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A man in the middle: a certificate the system store does not trust.
    monkeypatch.setenv("SSL_CERT_FILE", str(hosted_postgres.certs.other_ca))
    database = await open_database(
        hosted_postgres.url(sslmode="require", channel_binding="require")
    )

    message = await _refusal(database)

    assert "certificate" in message
    assert "channel_binding=require" in message


async def test_supported_parameters_are_never_logged_as_unsupported(
    hosted_postgres: HostedPostgres, open_database: Open, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = hosted_postgres.url(
        sslmode="verify-full",
        sslrootcert=str(hosted_postgres.certs.ca),
        application_name="todo-check",
        connect_timeout="10",
    )
    database = await open_database(url)

    async with database.engine.connect() as connection:
        name = await connection.scalar(text("SELECT current_setting('application_name')"))

    assert name == "todo-check"
    logged = caplog.text.lower()
    assert "not use" not in logged
    assert "unsupported" not in logged
    assert "does not take" not in logged


async def test_a_wrong_password_stops_at_once_naming_the_url(
    hosted_postgres: HostedPostgres, open_database: Open
) -> None:
    database = await open_database(hosted_postgres.url(password="wrong", sslmode="require"))

    message = await _refusal(database)

    assert "password" in message
    assert "DATABASE_URL" in message
    assert "wrong" not in message.replace("wrong password", "")


async def test_a_missing_database_stops_at_once_naming_it(
    hosted_postgres: HostedPostgres, open_database: Open
) -> None:
    database = await open_database(hosted_postgres.url(database="nosuchdb", sslmode="require"))

    message = await _refusal(database)

    assert "nosuchdb" in message
    assert "database name" in message
