"""What `python app.py` puts in the environment before it starts anything."""

from __future__ import annotations

from pathlib import Path

from app import prepare_environment


def _prepare(tmp_path: Path, dotenv: str, **env: str) -> dict[str, str]:
    env_file = tmp_path / ".env"
    env_file.write_text(dotenv)
    environment = {"DATA_DIR": str(tmp_path / "data"), **env}
    prepare_environment(environment, env_file)
    return environment


def test_dotenv_values_beat_the_launcher_defaults(tmp_path: Path) -> None:
    env = _prepare(tmp_path, "HOST=127.0.0.1\nAUTH_SERVICE_PORT=9101\nLOG_LEVEL=DEBUG\n")

    assert env["HOST"] == "127.0.0.1"
    assert env["AUTH_SERVICE_URL"] == "http://127.0.0.1:9101"
    assert env["LOG_LEVEL"] == "DEBUG"
    assert env["PORT"] == "7860"


def test_real_environment_variables_beat_dotenv(tmp_path: Path) -> None:
    env = _prepare(tmp_path, "PORT=9001\nSECRET_KEY=from-dotenv\n", PORT="9002")

    assert env["PORT"] == "9002"
    assert env["SECRET_KEY"] == "from-dotenv"


def test_production_in_dotenv_gets_no_generated_secret_key(tmp_path: Path) -> None:
    # A generated key would let a production stack start without the key it must be given.
    env = _prepare(tmp_path, "APP_ENV=production\n")

    assert env["APP_ENV"] == "production"
    assert "SECRET_KEY" not in env
    assert not (tmp_path / "data" / "secret_key").exists()


def test_without_dotenv_the_defaults_apply(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data")}

    prepare_environment(env, tmp_path / "missing.env")

    assert env["PORT"] == "7860"
    assert env["SECRET_KEY"] == (tmp_path / "data" / "secret_key").read_text()
