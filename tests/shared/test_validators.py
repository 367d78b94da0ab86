"""Input rules shared by settings and request bodies."""

from __future__ import annotations

import re
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, StringConstraints, ValidationError

from shared.validators import StorableText, blank_to_none


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", None), ("  \t\n", None), (None, None), (" x ", " x "), ("0", "0"), (0, 0), ([], [])],
)
def test_only_blank_text_becomes_none(value: Any, expected: Any) -> None:
    assert blank_to_none(value) == expected


class Note(BaseModel):
    text: Annotated[str, StringConstraints(max_length=20), StorableText]


@pytest.mark.parametrize("text", ["plain", "émoji 🎉", ""])
def test_storable_text_passes_and_matches_the_documented_pattern(text: str) -> None:
    pattern = Note.model_json_schema()["properties"]["text"]["pattern"]

    assert Note(text=text).text == text
    assert re.fullmatch(pattern, text)


@pytest.mark.parametrize("text", ["nul\x00inside", "\x00"])
def test_nul_is_refused_as_the_documented_pattern_says(text: str) -> None:
    pattern = Note.model_json_schema()["properties"]["text"]["pattern"]

    with pytest.raises(ValidationError, match="NUL"):
        Note(text=text)
    assert not re.fullmatch(pattern, text)


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(ValidationError):
        Note(text="lone \ud800")


def test_the_other_constraints_still_apply_and_are_documented() -> None:
    schema = Note.model_json_schema()["properties"]["text"]

    assert schema["maxLength"] == 20
    with pytest.raises(ValidationError, match="at most 20"):
        Note(text="x" * 21)
