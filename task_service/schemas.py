"""Request and response bodies of the task service, and the list query.

Unknown fields in a body are ignored (pydantic's default), so a client may send back a whole
task as it received it: `id`, `user_id` and the timestamps are never taken from a body.
PUT and PATCH take the same partial body: many frontends send PUT with only the fields the
user changed, and a PUT that reset the others would lose them without a word.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
)

from shared.validators import StorableText, blank_to_none
from task_service.models import DESCRIPTION_MAX_LENGTH, TITLE_MAX_LENGTH, Priority

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
    offset: int = Field(default=0, ge=0, le=MAX_BIGINT, description="Tasks to skip")

    @property
    def direction(self) -> SortOrder:
        """The order asked for, or the sort key's default."""
        return self.order or DEFAULT_ORDER[self.sort]
