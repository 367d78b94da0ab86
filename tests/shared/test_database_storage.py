"""A persistent volume (/data) that cannot be used is said out loud, not worked around in
silence: a WARNING naming /data and DATA_DIR, and /health calling the storage ephemeral."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

import app as launcher
from shared import settings as shared_settings
from shared.settings import ServiceSettings, default_data_dir, storage_is_ephemeral
from task_service.app import create_app
from task_service.settings import TaskSettings
from tests.support.asgi import serving
from tests.support.tokens import SECRET_KEY


@pytest.fixture
def unusable_volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """/data as a path that exists but is no writable directory (root may write anywhere,
    so a file stands in for a read-only mount)."""
    volume = tmp_path / "volume"
    volume.write_text("")
    monkeypatch.setattr(shared_settings, "PERSISTENT_DATA_DIR", volume)
    monkeypatch.chdir(tmp_path)
    return volume


def test_the_launcher_warns_naming_the_volume_and_data_dir(
    unusable_volume: Path, tmp_path: Path
) -> None:
    env = {"SECRET_KEY": SECRET_KEY}

    notes = launcher.prepare_environment(env, env_file=tmp_path / "missing.env")

    (warning,) = [note for note in notes if note.startswith("WARNING")]
    assert str(unusable_volume) in warning
    assert "DATA_DIR" in warning
    assert env["DATA_DIR"] == str(tmp_path / "data")


def test_a_usable_volume_is_used_without_a_warning(tmp_path: Path) -> None:
    env = {"SECRET_KEY": SECRET_KEY}

    assert default_data_dir(tmp_path) == tmp_path
    assert not storage_is_ephemeral(tmp_path / "x", persistent=tmp_path)
    notes = launcher.prepare_environment(env, env_file=tmp_path / "missing.env")
    assert not [note for note in notes if note.startswith("WARNING")]


def test_the_service_warns_and_health_says_the_storage_is_ephemeral(
    unusable_volume: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ServiceSettings(_env_file=None, data_dir=tmp_path / "data")

    (warning,) = [w for w in settings.startup_warnings() if str(unusable_volume) in w]
    assert "DATA_DIR" in warning
    assert settings.database_config().ephemeral is True


async def test_health_reports_ephemeral_storage(
    unusable_volume: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    settings = TaskSettings(
        _env_file=None, secret_key=SecretStr(SECRET_KEY), data_dir=tmp_path / "data"
    )
    app = create_app(settings)
    async with serving(app, "http://t.test") as client:
        body = (await client.get("/health")).json()

    assert body["storage"] == "sqlite"
    assert body["storage_ephemeral"] is True
    assert "ephemeral" in body["warning"].lower()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(unusable_volume) in w and "DATA_DIR" in w for w in warnings)


async def test_health_on_a_usable_disk_is_not_ephemeral(tmp_path: Path) -> None:
    settings = TaskSettings(
        _env_file=None, secret_key=SecretStr(SECRET_KEY), data_dir=tmp_path / "data"
    )
    app = create_app(settings)
    async with serving(app, "http://t.test") as client:
        body = (await client.get("/health")).json()

    assert body["storage_ephemeral"] is False
