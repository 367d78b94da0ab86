"""Start the whole stack: the public gateway and the two services behind it, under supervisord.

    python app.py                 fill in defaults, check the configuration, exec supervisord
    python app.py --healthcheck   exit 0 when the gateway answers its liveness route (Docker)
    python app.py --supervisord   run supervisord in this process (what `python app.py` execs);
                                  exit 1 when it stopped because a program went FATAL, else 0

When a program cannot be kept running, supervisord stops everything (shared/supervision.py),
so the platform restarts the container.

Everything is configured by environment variables (see .env.example).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# Uvicorn in the gateway trusts X-Forwarded-For only from these peers. The Spaces proxy
# reaches the container from a private network; a public client cannot spoof its address.
PRIVATE_NETWORKS = "127.0.0.1,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7"

DEFAULTS = {
    "HOST": "0.0.0.0",  # noqa: S104 (the gateway is the public process)
    "PORT": "7860",
    "AUTH_SERVICE_PORT": "8001",
    "TASK_SERVICE_PORT": "8002",
    "FORWARDED_ALLOW_IPS": PRIVATE_NETWORKS,
    # How often supervisord restarts a program that dies while starting before giving up
    # (FATAL, which stops the stack). Its back-off grows by a second per try.
    "START_RETRIES": "5",
}
PORT_VARIABLES = ("PORT", "AUTH_SERVICE_PORT", "TASK_SERVICE_PORT")
SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name)


def prepare_environment(env: MutableMapping[str, str], env_file: Path = ROOT / ".env") -> list[str]:
    """Fill in what the stack needs and was not given; return notes for the operator."""
    from dotenv import dotenv_values

    from shared.settings import default_data_dir, unusable_persistent_storage

    # `.env` first: the defaults below would otherwise land in the environment, where they
    # beat `.env` in every service's settings. Real variables still win, as they do there.
    for name, value in dotenv_values(env_file).items():
        if value is not None:
            env.setdefault(name, value)
    notes = []
    for name, value in DEFAULTS.items():
        env.setdefault(name, value)
    env.setdefault("AUTH_SERVICE_URL", f"http://127.0.0.1:{env['AUTH_SERVICE_PORT']}")
    env.setdefault("TASK_SERVICE_URL", f"http://127.0.0.1:{env['TASK_SERVICE_PORT']}")
    if "DATA_DIR" not in env and (problem := unusable_persistent_storage()):
        notes.append(f"WARNING: {problem}.")
    data_dir = Path(env.setdefault("DATA_DIR", str(default_data_dir())))
    if not env.get("SECRET_KEY") and env.get("APP_ENV", "development") != "production":
        try:
            env["SECRET_KEY"] = _persistent_secret(data_dir)
        except OSError as exc:
            raise SystemExit(
                f"Invalid configuration: DATA_DIR: cannot keep the signing key in {data_dir} "
                f"({exc.strerror or exc}); set DATA_DIR to a writable directory, or SECRET_KEY"
            ) from None
        notes.append(
            f"SECRET_KEY is not set: using a random key kept in {data_dir / SECRET_KEY_FILE}. "
            "Set SECRET_KEY yourself to share it with other deployments."
        )
    env["APP_PYTHON"] = sys.executable
    return notes


def _persistent_secret(data_dir: Path) -> str:
    """A random signing key, created once and kept with the data it protects."""
    import secrets

    path = data_dir / SECRET_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key)
    return key


def port_problems(env: Mapping[str, str]) -> list[str]:
    """What is wrong with the ports the programs would listen on, and with START_RETRIES
    (supervisord would refuse its configuration with a traceback)."""
    problems = []
    if not env["START_RETRIES"].isdigit():
        problems.append(f"START_RETRIES must be a whole number, not {env['START_RETRIES']!r}")
    taken: dict[int, str] = {}
    for name in PORT_VARIABLES:
        try:
            port = int(env[name])
        except ValueError:
            port = 0
        if not 1 <= port <= 65535:
            problems.append(f"{name} must be a port number (1-65535), not {env[name]!r}")
        elif port in taken:
            problems.append(f"{name} and {taken[port]} are both {port}: each needs its own")
        taken.setdefault(port, name)
    return problems


def check_configuration(env: Mapping[str, str]) -> None:
    """Exit with one line per distinct problem, naming the processes it stops."""
    from pydantic import ValidationError

    from auth_service.settings import AuthSettings
    from gateway.settings import GatewaySettings
    from shared.settings import validation_problems
    from task_service.settings import TaskSettings

    # Without this a bad port only shows as a program crashing over and over. The service
    # URLs are made from the ports, so nothing else is worth checking until they are right.
    if problems := port_problems(env):
        raise SystemExit("\n".join(f"Invalid configuration: {problem}" for problem in problems))
    stopped: dict[str, list[str]] = {}
    for name, settings_class in (
        ("auth service", AuthSettings),
        ("task service", TaskSettings),
        ("gateway", GatewaySettings),
    ):
        try:
            settings_class()
        except ValidationError as exc:
            for problem in validation_problems(exc):
                stopped.setdefault(problem, []).append(name)
    if stopped:
        raise SystemExit(
            "\n".join(
                f"Invalid configuration ({', '.join(names)}): {problem}"
                for problem, names in stopped.items()
            )
        )


def start() -> None:
    import tempfile

    os.chdir(ROOT)
    notes = prepare_environment(os.environ)
    check_configuration(os.environ)
    if not os.environ.get("SUPERVISOR_RUN_DIR"):
        # For supervisord's socket and pid file, which it removes when it stops; the empty
        # directory stays in the system's temporary directory.
        os.environ["SUPERVISOR_RUN_DIR"] = tempfile.mkdtemp(prefix="todo-supervisor-")
    for note in notes:
        print(f"app.py: {note}", file=sys.stderr, flush=True)
    # Replace this process, so the platform's signals reach supervisord directly and nothing
    # the configuration check imported stays in memory.
    command = [sys.executable, str(ROOT / "app.py"), "--supervisord"]
    os.execv(sys.executable, command)  # noqa: S606 (fixed command, no shell)


def run_supervisord() -> int:
    """Run supervisord here; 1 when it stopped because a program went FATAL, else 0.

    supervisord exits 0 however it was stopped, and a signal cannot end it with another
    status: as a container's PID 1 it is immune to every signal it does not handle.
    """
    # supervisord serves HTTP on a unix socket only and has no TLS; http.client, which it
    # loads, imports ssl just to offer HTTPS. That is 1.2 MiB of this process for as long as
    # the stack runs (bench/history.md): http.client does without it.
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    from supervisor import supervisord

    from shared.supervision import FATAL_MARKER

    marker = Path(os.environ["SUPERVISOR_RUN_DIR"]) / FATAL_MARKER
    marker.unlink(missing_ok=True)
    supervisord.main(["-c", str(ROOT / "supervisord.conf")])
    if marker.exists():
        marker.unlink()
        return 1
    return 0


def healthcheck() -> int:
    """Liveness, not `/health`: a database outage must not mark the container unhealthy, and
    an auto-healer restarting it could not help."""
    import urllib.error
    import urllib.request

    url = f"http://127.0.0.1:{os.environ.get('PORT', DEFAULTS['PORT'])}/health/live"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


if __name__ == "__main__":
    if "--healthcheck" in sys.argv[1:]:
        sys.exit(healthcheck())
    if "--supervisord" in sys.argv[1:]:
        sys.exit(run_supervisord())
    start()
