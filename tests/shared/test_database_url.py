"""DATABASE_URL as operators paste it (Neon's console, Heroku-style, SQLAlchemy-style)."""

from __future__ import annotations

import pytest

from shared.database_url import parse_database_url

NEON = (
    "postgresql://alex:AbC123dEf@ep-cool-darkness-123456.us-east-2.aws.neon.tech/dbname"
    "?sslmode=require&channel_binding=require"
)


def test_neon_console_url_is_read_with_its_tls_parameters() -> None:
    target = parse_database_url(NEON)

    assert target.kind == "postgresql"
    assert target.host == "ep-cool-darkness-123456.us-east-2.aws.neon.tech"
    assert (target.port, target.database, target.user) == (5432, "dbname", "alex")
    assert target.password == "AbC123dEf"
    assert target.sslmode == "require"
    assert target.channel_binding == "require"
    assert target.unused == ()
    assert target.pooler_mode("auto") == "none"


def test_neon_pooler_host_is_detected() -> None:
    target = parse_database_url(NEON.replace("123456.", "123456-pooler."))

    assert target.pooler_mode("auto") == "transaction"


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://u:p@host:5432/app",
        "postgresql://u:p@host:5432/app",
        "postgresql+asyncpg://u:p@host:5432/app",
        "  postgresql://u:p@host:5432/app\n",
        "postgresql://u:p@host/app",
    ],
)
def test_every_common_postgres_form_is_accepted(raw: str) -> None:
    target = parse_database_url(raw)

    assert (target.host, target.port, target.database) == ("host", 5432, "app")


@pytest.mark.parametrize(
    "mode", ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
)
def test_every_libpq_sslmode_is_read(mode: str) -> None:
    assert parse_database_url(f"postgresql://u:p@h/app?sslmode={mode}").sslmode == mode


@pytest.mark.parametrize("mode", ["disable", "require", "verify-full"])
def test_ssl_in_asyncpg_spelling_is_read_as_sslmode(mode: str) -> None:
    assert parse_database_url(f"postgresql+asyncpg://u:p@h/app?ssl={mode}").sslmode == mode


def test_sslmode_and_ssl_together_must_agree() -> None:
    agreeing = parse_database_url("postgresql://u:p@h/app?sslmode=require&ssl=require")

    assert agreeing.sslmode == "require"
    with pytest.raises(ValueError, match="DATABASE_URL sslmode and ssl must agree"):
        parse_database_url("postgresql://u:p@h/app?sslmode=require&ssl=disable")


def test_certificate_parameters_are_kept() -> None:
    target = parse_database_url(
        "postgresql://u:p@h/app?sslmode=verify-full&sslrootcert=/etc/ca.pem"
        "&sslcert=/c.pem&sslkey=/k.pem"
    )

    assert (target.sslrootcert, target.sslcert, target.sslkey) == (
        "/etc/ca.pem",
        "/c.pem",
        "/k.pem",
    )
    assert parse_database_url("postgresql://u:p@h/app?sslrootcert=system").sslrootcert == "system"


def test_startup_parameters_are_kept_and_unknown_ones_reported() -> None:
    target = parse_database_url(
        "postgresql://u:p@h/app?application_name=todo&options=endpoint%3Dep-x&target_session_attrs=any"
    )

    assert target.server_settings == {"application_name": "todo", "options": "endpoint=ep-x"}
    assert target.unused == ("target_session_attrs",)


def test_connect_timeout_is_read_in_seconds() -> None:
    assert parse_database_url("postgresql://u:p@h/app?connect_timeout=15").connect_timeout == 15
    assert parse_database_url("postgresql://u:p@h/app?connect_timeout=0").connect_timeout is None


def test_password_is_hidden_in_the_description_and_repr() -> None:
    target = parse_database_url(NEON)

    assert "AbC123dEf" not in target.safe_description
    assert "AbC123dEf" not in repr(target)
    assert "alex" in target.safe_description


def test_percent_encoded_password_survives() -> None:
    target = parse_database_url("postgresql://u:p%40ss%2Fword@h/app")

    assert target.password == "p@ss/word"


def test_sqlite_url_is_allowed() -> None:
    target = parse_database_url("sqlite:///./todo.db")

    assert target.kind == "sqlite"
    assert target.database == "./todo.db"


@pytest.mark.parametrize(
    "raw",
    [
        "mysql://u:p@h/app",
        "not a url",
        "",
        "postgresql://u:p@h/app?sslmode=sometimes",
        "postgresql+asyncpg://u:p@h/app?ssl=true",
        "postgresql://u:p@h/app?channel_binding=always",
        "postgresql://u:p@h/app?connect_timeout=soon",
        "postgresql:///app",
        "postgresql://u:p@h:port/app",
        "postgresql://u:p@h:0/app",
        "postgresql://u:p@h:65536/app",
    ],
)
def test_unusable_urls_are_refused_clearly(raw: str) -> None:
    with pytest.raises(ValueError, match="DATABASE_URL"):
        parse_database_url(raw)
