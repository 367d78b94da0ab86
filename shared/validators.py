"""Small input rules shared by settings and request bodies."""

from __future__ import annotations

from typing import Any


def blank_to_none(value: Any) -> Any:
    """Blank text means "not given": `NAME=` in a .env file, or a body field of only spaces."""
    return None if isinstance(value, str) and not value.strip() else value
