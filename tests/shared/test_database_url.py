"""DATABASE_URL as operators paste it (Neon's console, Heroku-style, SQLAlchemy-style)."""

from __future__ import annotations

import pytest

from shared.db import translate_database_url

NEON = (
    "postgresql://alex:AbC123dEf@ep-cool-darkness-123456.us-east-2.aws.neon.tech/dbname"
    "?sslmode=require&channel_binding=require"
)


def test_neon_console_url_becomes_an_asyncpg_url() -> None:
    target = translate_database_url(NEON)

    assert target.kind == "postgresql"
    assert target.url.drivername == "postgresql+asyncpg"
    assert target.url.host == "ep-cool-darkness-123456.us-east-2.aws.neon.tech"
    assert target.url.database == "dbname"
    assert dict(target.url.query) == {}
    assert target.connect_args == {"ssl": "require"}
    assert not target.uses_transaction_pooler


def test_neon_pooler_host_is_detected() -> None:
    target = translate_database_url(NEON.replace("123456.", "123456-pooler."))

    assert target.uses_transaction_pooler


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://u:p@host:5432/app",
        "postgresql://u:p@host:5432/app",
        "postgresql+asyncpg://u:p@host:5432/app",
        "  postgresql://u:p@host:5432/app\n",
    ],
)
def test_every_common_postgres_form_is_accepted(raw: str) -> None:
    target = translate_database_url(raw)

    assert target.url.drivername == "postgresql+asyncpg"
    assert (target.url.host, target.url.port, target.url.database) == ("host", 5432, "app")


@pytest.mark.parametrize("mode", ["disable", "prefer", "require", "verify-full"])
def test_sslmode_maps_to_asyncpg_ssl(mode: str) -> None:
    target = translate_database_url(f"postgresql://u:p@h/app?sslmode={mode}")

    assert target.connect_args["ssl"] == mode


@pytest.mark.parametrize("mode", ["disable", "require", "verify-full"])
def test_ssl_in_asyncpg_spelling_is_kept(mode: str) -> None:
    target = translate_database_url(f"postgresql+asyncpg://u:p@h/app?ssl={mode}")

    assert target.connect_args["ssl"] == mode
    assert dict(target.url.query) == {}


def test_sslmode_and_ssl_together_must_agree() -> None:
    agreeing = translate_database_url("postgresql://u:p@h/app?sslmode=require&ssl=require")

    assert agreeing.connect_args["ssl"] == "require"
    with pytest.raises(ValueError, match="DATABASE_URL sslmode and ssl must agree"):
        translate_database_url("postgresql://u:p@h/app?sslmode=require&ssl=disable")


def test_application_name_is_kept_as_a_server_setting() -> None:
    target = translate_database_url("postgresql://u:p@h/app?application_name=todo&options=x")

    assert target.connect_args == {"server_settings": {"application_name": "todo"}}


def test_password_is_hidden_in_the_description() -> None:
    description = translate_database_url(NEON).safe_description

    assert "AbC123dEf" not in description
    assert "alex" in description


def test_percent_encoded_password_survives() -> None:
    target = translate_database_url("postgresql://u:p%40ss%2Fword@h/app")

    assert target.url.password == "p@ss/word"


def test_sqlite_url_is_allowed() -> None:
    target = translate_database_url("sqlite:///./todo.db")

    assert target.kind == "sqlite"
    assert target.url.drivername == "sqlite+aiosqlite"


@pytest.mark.parametrize(
    "raw",
    [
        "mysql://u:p@h/app",
        "not a url",
        "",
        "postgresql://u:p@h/app?sslmode=sometimes",
        "postgresql+asyncpg://u:p@h/app?ssl=true",
        "postgresql://u:p@h:port/app",
        "postgresql://u:p@h:0/app",
        "postgresql://u:p@h:65536/app",
    ],
)
def test_unusable_urls_are_refused_clearly(raw: str) -> None:
    with pytest.raises(ValueError, match="DATABASE_URL"):
        translate_database_url(raw)
