"""Promises the repository makes about itself."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", readme)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = next(c for c in _readme_commands() if "requirements-dev.txt" in c)
    ci_script = (ROOT / ".ci" / "run").read_text().splitlines()

    assert test_command in ci_script
