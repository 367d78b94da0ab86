"""Settings: parsing, defaults and the refusal to run production without essentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.settings import (
    DEV_SECRET_KEY,
    CommaSeparatedList,
    CommonSettings,
    ServiceSettings,
    default_data_dir,
    load_settings,
)


class _ListSettings(CommonSettings):
    origins: CommaSeparatedList = []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://a.example, https://b.example", ["https://a.example", "https://b.example"]),
        ("https://a.example", ["https://a.example"]),
        (
            ' ["https://a.example", "https://b.example"] ',
            ["https://a.example", "https://b.example"],
        ),
        ("", []),
        (" , ,", []),
    ],
)
def test_comma_separated_lists_parse_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("ORIGINS", raw)

    assert _ListSettings(_env_file=None).origins == expected


def test_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug")

    assert CommonSettings(_env_file=None).log_level == "DEBUG"


def test_production_without_database_or_secret_exits_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "too-short")
    monkeypatch.chdir(Path(__file__).parent)  # no .env here

    with pytest.raises(SystemExit) as exited:
        load_settings(ServiceSettings)

    message = str(exited.value.code)
    assert "\n" not in message
    assert "DATABASE_URL is not set" in message
    assert "SECRET_KEY must be set to at least 32 bytes" in message
    assert "too-short" not in message


def test_production_with_essentials_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db.example/app")
    monkeypatch.setenv("SECRET_KEY", "k" * 32)

    settings = ServiceSettings(_env_file=None)

    assert settings.signing_key == "k" * 32
    assert settings.startup_warnings() == []


def test_bad_values_are_named_without_echoing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "lots")
    monkeypatch.setenv("LOG_LEVEL", "chatty")

    with pytest.raises(SystemExit) as exited:
        load_settings(ServiceSettings)

    message = str(exited.value.code)
    assert "DB_POOL_SIZE" in message
    assert "LOG_LEVEL" in message
    assert "lots" not in message


def test_development_without_secret_uses_a_loudly_flagged_dev_key() -> None:
    settings = ServiceSettings(_env_file=None)

    assert settings.signing_key == DEV_SECRET_KEY
    warnings = " ".join(settings.startup_warnings())
    assert "SECRET_KEY is not set" in warnings
    assert "DATABASE_URL is not set" in warnings


def test_settings_repr_hides_secrets() -> None:
    settings = ServiceSettings(
        _env_file=None,
        secret_key=SecretStr("s" * 40),
        database_url=SecretStr("postgresql://u:hunter2@db/app"),
    )

    assert "hunter2" not in repr(settings)
    assert "s" * 40 not in repr(settings)


def test_data_dir_prefers_persistent_storage_when_writable(tmp_path: Path) -> None:
    assert default_data_dir(tmp_path) == tmp_path


def test_data_dir_falls_back_to_a_local_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert default_data_dir(tmp_path / "missing") == tmp_path / "data"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("mysql://app:pw-Zk93@db.example/app", "postgresql://"),
        ("postgresql://app:pw-Zk93@db.example/app?sslmode=bogus", "sslmode must be one of"),
        ("notaurl-pw-Zk93", "must look like postgresql://"),
        ("postgresql://app:pw-Zk93@db.example:port/app", "must look like postgresql://"),
        ("postgresql://app:pw-Zk93@db.example:99999/app", "port must be between"),
    ],
)
def test_unusable_database_url_exits_with_one_line_that_hides_the_password(
    monkeypatch: pytest.MonkeyPatch, raw: str, problem: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", raw)

    with pytest.raises(SystemExit) as exited:
        load_settings(ServiceSettings)

    message = str(exited.value.code)
    assert "\n" not in message
    assert message.startswith("Invalid configuration: DATABASE_URL: ")
    assert problem in message
    assert "pw-Zk93" not in message


@pytest.mark.parametrize("raw", ["", "  "])
def test_blank_database_url_means_unset(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("DATABASE_URL", raw)

    assert load_settings(ServiceSettings).database_url is None


def test_blank_database_url_in_production_is_reported_as_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 32)
    monkeypatch.setenv("DATABASE_URL", "")

    with pytest.raises(SystemExit, match="DATABASE_URL is not set"):
        load_settings(ServiceSettings)
