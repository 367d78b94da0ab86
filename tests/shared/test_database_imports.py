"""The gateway has no database: it must not load the ORM to start."""

from __future__ import annotations

from tests.support.imports import imported_modules


def test_the_gateway_imports_no_orm() -> None:
    modules = imported_modules("-c", "import gateway.main")

    assert "gateway.main" in modules
    orm = sorted(name for name in modules if name.split(".")[0] in {"sqlalchemy", "sqlmodel"})
    assert orm == []


def test_database_url_parsing_is_a_leaf() -> None:
    modules = imported_modules("-c", "import shared.database_url")

    assert not {
        name for name in modules if name.split(".")[0] in {"sqlalchemy", "sqlmodel", "pydantic"}
    }
    assert {name for name in modules if name.startswith("shared.")} == {"shared.database_url"}
