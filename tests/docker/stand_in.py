"""A stand-in for the `python:3.12-slim` base image, made from Debian's packages.

No registry is reachable where the suite runs, so the official image cannot be pulled. The
stand-in is Debian bookworm (`debootstrap --variant=minbase`) with `python3`, `python3-venv`
and `ca-certificates`, a virtual environment at /usr/local so that `python` and `pip` are on
PATH as in the official image, and this machine's CA bundle (pip in the build reaches the
package index the way this machine does). Bookworm's Python is 3.11, the oldest the project
supports, where Spaces build on 3.12.

Making it takes a few minutes, so the root filesystem is kept as a tarball in
~/.cache/todo-backend/ (outside the repository), named after a hash of its recipe: changing
the recipe, or the CA bundle, makes a new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.docker.daemon import Daemon

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
# Inside the image, where pip and OpenSSL look for trusted CAs.
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Bump when the steps below change in a way the other recipe fields do not show.
RECIPE_REVISION = 1
# Left out of the tarball: caches and documentation the image does not need.
PRUNED = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man")


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "todo-backend"


def host_ca_bundle() -> Path:
    """The CA bundle pip uses on this machine (its `cert` setting), else the system's."""
    configured = pip_settings().get("cert")
    for candidate in (configured, CA_BUNDLE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("no CA bundle on this machine")


def recipe() -> dict[str, object]:
    bundle = hashlib.sha256(host_ca_bundle().read_bytes()).hexdigest()
    return {
        "revision": RECIPE_REVISION,
        "suite": SUITE,
        "variant": "minbase",
        "packages": PACKAGES,
        "venv": "/usr/local",
        "ca_bundle_sha256": bundle,
    }


def image_tag() -> str:
    digest = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()
    return f"todo-stand-in-base:{digest[:16]}"


def debian_mirror() -> str:
    """The Debian archive this machine's apt uses (deb822 or one-line sources)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1)
                for line in stanza.splitlines()
                if re.match(r"^[A-Za-z-]+:", line)
            )
            suites = fields.get("Suites", "").split()
            if "deb" in fields.get("Types", "").split() and any("-" not in s for s in suites):
                return fields["URIs"].split()[0]
    one_line = Path("/etc/apt/sources.list")
    if one_line.is_file():
        for line in one_line.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "-" not in parts[2]:
                return next(p for p in parts[1:] if "://" in p)
    raise LookupError("no Debian archive in this machine's apt sources")


def pip_settings() -> dict[str, str]:
    """pip's effective settings here (files and PIP_* variables), by option name."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    settings: dict[str, str] = {}
    # Later lines are the more specific sources; the environment wins, as in pip itself.
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        settings[key.split(".", 1)[-1]] = value.strip().strip("'\"")
    for name, value in os.environ.items():
        if name.startswith("PIP_"):
            settings[name[4:].lower().replace("_", "-")] = value
    return settings


def pip_build_args() -> dict[str, str]:
    """The Dockerfile's PIP_* build arguments that make pip in the build reach the package
    index as pip does here. Local paths (`file:` indexes, find-links) are not in the build
    context and are left out; the CA bundle is the one copied into the stand-in."""
    settings = pip_settings()
    args: dict[str, str] = {}
    for option in ("index-url", "extra-index-url", "trusted-host"):
        values = [v for v in settings.get(option, "").split() if not v.startswith("file:")]
        if values:
            args["PIP_" + option.upper().replace("-", "_")] = " ".join(values)
    if settings.get("cert"):
        args["PIP_CERT"] = CA_BUNDLE
    if settings.get("default-timeout"):
        args["PIP_DEFAULT_TIMEOUT"] = settings["default-timeout"]
    return args


def ensure_stand_in(daemon: Daemon) -> str:
    """Import the cached stand-in into the daemon (making it first if needed); its tag."""
    tag = image_tag()
    tarball = cache_dir() / f"{tag.replace(':', '-')}.tar"
    tarball.parent.mkdir(parents=True, exist_ok=True)
    # Concurrent test runs share the cache: one makes it, the others wait for it.
    with (tarball.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tarball.exists():
            _make_tarball(tarball)
    daemon.run(
        "import",
        "--change",
        "ENV LANG=C.UTF-8",
        "--change",
        'CMD ["python3"]',
        "-",
        tag,
        input_path=tarball,
        timeout=300,
    )
    return tag


def _make_tarball(tarball: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="todo-stand-in-", dir="/var/tmp"))
    root = work / "root"
    try:
        _run(
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(root),
            debian_mirror(),
        )
        _run("chroot", str(root), "python3", "-m", "venv", "/usr/local")
        shutil.copyfile(host_ca_bundle(), root / CA_BUNDLE.lstrip("/"))
        for pruned in PRUNED:
            for child in (root / pruned).glob("*"):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        partial = tarball.with_suffix(".partial")
        _run("tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), ".")
        partial.rename(tarball)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)


def _run(*command: str) -> None:
    result = subprocess.run(  # noqa: S603 (fixed commands)
        command, capture_output=True, text=True, check=False, timeout=900
    )
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {result.returncode}:\n{result.stderr[-3000:]}")
