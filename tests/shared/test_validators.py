"""Input rules shared by settings and request bodies."""

from __future__ import annotations

from typing import Any

import pytest

from shared.validators import blank_to_none


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", None), ("  \t\n", None), (None, None), (" x ", " x "), ("0", "0"), (0, 0), ([], [])],
)
def test_only_blank_text_becomes_none(value: Any, expected: Any) -> None:
    assert blank_to_none(value) == expected
