"""The gateway has no database: it must not load the ORM to start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported_modules(statement: str) -> set[str]:
    """Every module `statement` loads in a fresh interpreter, from `-X importtime`."""
    result = subprocess.run(  # noqa: S603 (fixed command)
        [sys.executable, "-X", "importtime", "-c", statement],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_the_gateway_imports_no_orm() -> None:
    modules = _imported_modules("import gateway.main")

    assert "gateway.main" in modules
    orm = sorted(name for name in modules if name.split(".")[0] in {"sqlalchemy", "sqlmodel"})
    assert orm == []


def test_database_url_parsing_is_a_leaf() -> None:
    modules = _imported_modules("import shared.database_url")

    assert not {
        name for name in modules if name.split(".")[0] in {"sqlalchemy", "sqlmodel", "pydantic"}
    }
    assert {name for name in modules if name.startswith("shared.")} == {"shared.database_url"}
