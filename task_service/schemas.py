"""Request and response bodies of the task service, and the list query.

Unknown fields in a body are ignored (pydantic's default), so a client may send back a whole
task as it received it: `id`, `user_id` and the timestamps are never taken from a body.
PUT and PATCH take the same partial body: many frontends send PUT with only the fields the
user changed, and a PUT that reset the others would lose them without a word.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.validators import StorableText, blank_to_none, ensure_storable
from task_service.models import DESCRIPTION_MAX_LENGTH, PRIORITIES, TITLE_MAX_LENGTH, Priority

MAX_TAGS = 10
TAG_MAX_LENGTH = 30
SEARCH_MAX_LENGTH = 200
# The largest id a BIGINT holds: bigger path or query numbers are a 422, not a database error.
MAX_BIGINT = 2**63 - 1

TaskStatus = Literal["all", "pending", "completed"]
SortField = Literal["created_at", "updated_at", "due_date", "priority", "title"]
SortOrder = Literal["asc", "desc"]

# Newest first for dates of change, soonest first for due dates, most urgent first, A to Z.
DEFAULT_ORDER: dict[SortField, SortOrder] = {
    "created_at": "desc",
    "updated_at": "desc",
    "due_date": "asc",
    "priority": "desc",
    "title": "asc",
}


def _unique(values: list[str]) -> list[str]:
    """Drop repeated tags, keeping the first occurrence of each (and the client's order)."""
    return list(dict.fromkeys(values))


_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")


def _require_iso_date_time(value: Any) -> Any:
    # pydantic would also take Unix timestamps and bare dates; the API promises ISO-8601
    # date-times only, so a client's mistake is a 422 instead of a surprising date.
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE_TIME.match(value):
        return value
    raise ValueError("must be an ISO-8601 date-time, such as 2030-01-31T17:00:00Z")


def _to_utc(value: datetime | None) -> datetime | None:
    """Naive date-times are taken as UTC; others are converted to it."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 would fall before year 1
        raise ValueError("must be between the years 1 and 9999 in UTC") from None


def _trimmed(max_length: int, min_length: int | None = None) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


Title = Annotated[
    str, _trimmed(TITLE_MAX_LENGTH, min_length=1), StorableText, Field(examples=["Buy milk"])
]
# Optional free text: trimmed, and blank means absent.
Description = Annotated[
    Annotated[str, _trimmed(DESCRIPTION_MAX_LENGTH), StorableText] | None,
    AfterValidator(blank_to_none),
]
TagFilter = Annotated[
    Annotated[str, _trimmed(TAG_MAX_LENGTH), StorableText] | None, AfterValidator(blank_to_none)
]
SearchText = Annotated[
    Annotated[str, _trimmed(SEARCH_MAX_LENGTH), StorableText] | None, AfterValidator(blank_to_none)
]
DueDate = Annotated[
    datetime | None,
    BeforeValidator(_require_iso_date_time),
    AfterValidator(_to_utc),
    Field(
        description="ISO-8601 date-time; without an offset it is taken as UTC. "
        "Years 1 to 9999, in UTC."
    ),
]


def _within_tag_limit(values: list[str]) -> list[str]:
    # Checked after repeats are dropped (a `max_length` on the list would count them):
    # `["a"] * 11` is one tag.
    if len(values) > MAX_TAGS:
        raise ValueError(f"must hold at most {MAX_TAGS} different tags")
    return values


Tag = Annotated[str, _trimmed(TAG_MAX_LENGTH, min_length=1), StorableText]
Tags = Annotated[
    list[Tag],
    Field(
        description=f"At most {MAX_TAGS} different tags of 1 to {TAG_MAX_LENGTH} characters; "
        "repeats are dropped",
    ),
    AfterValidator(_unique),
    AfterValidator(_within_tag_limit),
]


class TaskBase(BaseModel):
    """Every editable field of a task."""

    title: Title
    description: Description = None
    # Strict: pydantic would otherwise read "no", "off" or 0 as false without a word.
    completed: StrictBool = False
    priority: Priority = "medium"
    due_date: DueDate = None
    tags: Tags = []


class TaskCreate(TaskBase):
    """A new task. Only `title` is required."""


# Fields a partial update may omit but not set to null: the columns cannot hold NULL.
_NOT_NULL = ("title", "completed", "priority", "tags")


def _document_not_null(schema: dict[str, Any]) -> None:
    """Drop the `null` alternative pydantic documents for the fields above."""
    for name in _NOT_NULL:
        field = schema["properties"][name]
        (kind,) = [branch for branch in field.pop("anyOf") if branch != {"type": "null"}]
        field.update(kind)


class TaskUpdate(BaseModel):
    """The body of PUT and PATCH: only the fields given change, the others are kept.

    An explicit null clears `description` or `due_date`; the other fields cannot be null.
    """

    model_config = ConfigDict(json_schema_extra=_document_not_null)

    title: Title | None = None
    description: Description = None
    completed: StrictBool | None = None
    priority: Priority | None = None
    due_date: DueDate = None
    tags: Tags | None = None

    @field_validator(*_NOT_NULL)
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Validators do not run on defaults: None here was sent explicitly.
        if value is None:
            raise ValueError("may be omitted but not null")
        return value


class TaskPublic(BaseModel):
    id: int
    user_id: str
    title: str
    description: str | None
    completed: bool
    priority: Priority
    due_date: datetime | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime


class TasksDeleted(BaseModel):
    """How many tasks one request deleted."""

    deleted: int


class TaskClearQuery(BaseModel):
    """The filter of `DELETE /api/{user_id}/tasks`, which is required: no bare DELETE on the
    collection can delete every task by accident."""

    status: Literal["completed"] = Field(
        description="Must be `completed`: the user's completed tasks are deleted"
    )


# The longest cursor the API issues: a title of control characters, each six bytes in JSON
# (`\u0001`), plus the other parts, in base64.
CURSOR_MAX_LENGTH = 4 * math.ceil((TITLE_MAX_LENGTH * 6 + 100) / 3)
_CURSOR_FIELDS: TypeAdapter[tuple[SortField, SortOrder, str | None, int]] = TypeAdapter(
    tuple[SortField, SortOrder, str | None, Annotated[int, Field(ge=1, le=MAX_BIGINT)]]
)
_DATE_KEYS = ("created_at", "updated_at", "due_date")


class InvalidCursorError(ValueError):
    """A cursor this API did not issue, or one altered since."""

    def __init__(self) -> None:
        super().__init__("is not a cursor from this list's `X-Next-Cursor` or `Link` header")


@dataclass(frozen=True)
class ListPosition:
    """Where a page ended: the sort, and the last task's sort key and id.

    A cursor is this, as base64 of JSON. It is not signed: it grants nothing (the user comes
    from the token) and a made-up one only starts a page of the caller's own tasks
    elsewhere; decoding checks every part, so a bad one is a 422, never a database error.
    """

    sort: SortField
    direction: SortOrder
    # A date-time, a priority or a title as stored; None for a task without a due date.
    key: datetime | str | None
    id: int

    @classmethod
    def after(cls, task: Mapping[str, Any], sort: SortField, direction: SortOrder) -> ListPosition:
        """The position just after a task (a mapping of its fields)."""
        key = task[sort]
        if isinstance(key, datetime) and key.tzinfo is None:
            key = key.replace(tzinfo=UTC)  # the driver reads year 1 as naive; it is UTC
        return cls(sort, direction, key, task["id"])

    def encode(self) -> str:
        key = self.key.isoformat() if isinstance(self.key, datetime) else self.key
        payload = json.dumps(
            [self.sort, self.direction, key, self.id], ensure_ascii=False, separators=(",", ":")
        )
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> ListPosition:
        """The position a cursor names; InvalidCursorError for anything else."""
        try:
            raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
            # Strict: the API writes the id as a number, never as "1" or 1.0.
            sort, direction, text, task_id = _CURSOR_FIELDS.validate_json(raw, strict=True)
            return cls(sort, direction, _cursor_key(sort, text), task_id)
        except (binascii.Error, ValueError, ValidationError):  # JSON and Unicode errors too
            raise InvalidCursorError from None


def _cursor_key(sort: SortField, text: str | None) -> datetime | str | None:
    if text is None:
        if sort != "due_date":  # only a due date may be absent
            raise ValueError
        return None
    if sort in _DATE_KEYS:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise ValueError
        return moment.astimezone(UTC)
    if sort == "priority" and text not in PRIORITIES:
        raise ValueError
    if len(text) > TITLE_MAX_LENGTH:
        raise ValueError
    return ensure_storable(text)


def _check_cursor(cursor: str | None) -> str | None:
    if cursor is not None:
        ListPosition.decode(cursor)
    return cursor


class TaskListQuery(BaseModel):
    """Filters, order and page of `GET /api/{user_id}/tasks`."""

    status: TaskStatus = Field(
        default="all", description="`pending` (not completed), `completed`, or `all`"
    )
    priority: Priority | None = Field(default=None, description="Only tasks of this priority")
    tag: TagFilter = Field(
        default=None, description="Only tasks carrying this tag (exact match); blank is ignored"
    )
    q: SearchText = Field(
        default=None,
        description="Case-insensitive search in title and description; `%` and `_` match "
        "themselves; blank is ignored",
    )
    sort: SortField = Field(
        default="created_at",
        description="Sort key. Priority ranks `high` > `medium` > `low`; title sorts "
        "case-insensitively; tasks without a due date always come last",
    )
    order: SortOrder | None = Field(
        default=None,
        description="Default per sort key: `desc` for `created_at` and `updated_at` (newest "
        "first) and for `priority` (high first); `asc` for `due_date` (soonest first) and "
        "`title` (A to Z). Ties are broken by id in the same direction, so pages are stable",
    )
    limit: int = Field(default=100, ge=1, le=100, description="Page size, 1 to 100")
    offset: int = Field(
        default=0,
        ge=0,
        le=MAX_BIGINT,
        description="Tasks to skip. A deep offset reads every task it skips: prefer `cursor`",
    )
    cursor: Annotated[str | None, AfterValidator(_check_cursor)] = Field(
        default=None,
        max_length=CURSOR_MAX_LENGTH,
        description="The next page: the value of the previous page's `X-Next-Cursor` header "
        '(its `Link: rel="next"` holds the whole URL). Costs the same however deep the page; '
        "the other parameters must stay as they were, `offset` excepted (0)",
    )

    @model_validator(mode="after")
    def _check_position(self) -> Self:
        position = self.position
        if position is None:
            return self
        if (position.sort, position.direction) != (self.sort, self.direction):
            raise ValueError("the cursor belongs to another sort or order")
        if self.offset:
            raise ValueError("cursor and offset cannot be combined")
        return self

    @property
    def direction(self) -> SortOrder:
        """The order asked for, or the sort key's default."""
        return self.order or DEFAULT_ORDER[self.sort]

    # Decoded once, when first read, rather than kept in a private attribute: a model with
    # one sets up its private state at each validation and reads it through pydantic's
    # __getattr__, a few percent of a list's CPU (bench/history.md).
    @cached_property
    def position(self) -> ListPosition | None:
        """Where the cursor says the previous page ended; None for the first page."""
        return None if self.cursor is None else ListPosition.decode(self.cursor)
