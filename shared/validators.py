"""Small input rules shared by settings and request bodies."""

from __future__ import annotations

from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

# JSON Schema's way of saying "no NUL character", so the documented contract and the
# validation agree (fuzzers generate from the document).
NO_NUL_PATTERN = "^[^\\u0000]*$"


def blank_to_none(value: Any) -> Any:
    """Blank text means "not given": `NAME=` in a .env file, or a body field of only spaces."""
    return None if isinstance(value, str) and not value.strip() else value


def ensure_storable(value: str) -> str:
    """Refuse text PostgreSQL cannot store: NUL characters and lone UTF-16 surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


class _StorableText:
    """`ensure_storable` as type metadata, documented in the JSON schema as a pattern."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(ensure_storable, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = NO_NUL_PATTERN
        return json_schema


# Metadata for every free-text input, placed after its length and strip constraints:
# `Annotated[str, StringConstraints(...), StorableText]`.
StorableText = _StorableText()
