"""Tables of the task service. They live in its own schema (`tasks` by default)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ColumnElement,
    Index,
    Integer,
    MetaData,
    SQLColumnExpression,
    case,
    func,
    literal_column,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, col

from shared.db import NAMING_CONVENTION, UTCDateTime, utcnow
from shared.tokens import MAX_SUBJECT_LENGTH

# The service's own metadata: the auth service's tables never mix with these.
metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Least urgent first: the position in this tuple is the rank sort=priority orders by.
Priority = Literal["low", "medium", "high"]
PRIORITIES: tuple[str, ...] = get_args(Priority)
# The column's width: the longest name ("medium"); migration 0001 wrote it down as 6.
PRIORITY_MAX_LENGTH = max(len(priority) for priority in PRIORITIES)
TITLE_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 1000


class TaskModel(SQLModel, registry=registry(metadata=metadata)):
    """Base of every task table."""


class Task(TaskModel, table=True):
    """One task of one user. `user_id` is the token's subject; the auth service owns users."""

    __tablename__ = "tasks"
    __table_args__ = (
        # Every list query filters on the user, then orders by one key with id as the
        # tie-break: one index per sort key reads a page in order, without sorting all of the
        # user's tasks. The status filter of the default listing has its own. The rest are
        # below the class, as they are built from its columns.
        Index(None, "user_id", "created_at", "id"),
        Index(None, "user_id", "completed", "created_at", "id"),
        Index(None, "user_id", "updated_at", "id"),
        Index(None, "user_id", "due_date", "id"),
        CheckConstraint(
            "priority IN ({})".format(", ".join(f"'{p}'" for p in PRIORITIES)), name="priority"
        ),
    )

    # BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the rowid alias.
    id: int | None = Field(
        default=None,
        primary_key=True,
        sa_type=BigInteger().with_variant(Integer(), "sqlite"),
    )
    user_id: str = Field(max_length=MAX_SUBJECT_LENGTH)
    title: str = Field(max_length=TITLE_MAX_LENGTH)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_LENGTH)
    completed: bool = False
    priority: str = Field(default="medium", max_length=PRIORITY_MAX_LENGTH)
    due_date: datetime | None = Field(default=None, sa_type=UTCDateTime)
    tags: list[str] = Field(
        default_factory=list,
        sa_type=JSON().with_variant(JSONB(), "postgresql"),
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TaskCount(TaskModel, table=True):
    """How many of a user's tasks have one priority and one completion state.

    Kept by database triggers on `tasks` (migrations 0002, 0004 and 0005), so listing a user's
    tasks filtered by nothing but status and priority sums at most six rows to fill in
    X-Total-Count, instead of counting the tasks.
    """

    __tablename__ = "task_counts"

    user_id: str = Field(primary_key=True, max_length=MAX_SUBJECT_LENGTH)
    priority: str = Field(primary_key=True, max_length=PRIORITY_MAX_LENGTH)
    completed: bool = Field(primary_key=True)
    count: int = Field(default=0, sa_type=BigInteger)


def priority_rank(priority: SQLColumnExpression[str]) -> ColumnElement[int]:
    """1 for the least urgent priority, up to len(PRIORITIES) for the most urgent.

    Values are written into the SQL, not bound: PostgreSQL uses an index on an expression
    only for the very same expression, which a CASE with parameters never is.
    """
    return case(
        *(
            (priority == literal_column(f"'{name}'"), literal_column(str(rank)))
            for rank, name in enumerate(PRIORITIES, start=1)
        )
    )


# PostgreSQL reflects this CASE in a layout Alembic cannot match to the model, so
# autogenerate leaves it alone; the plan tests of the list prove the query uses it.
Index(
    "ix_tasks_user_id_priority_rank_id",
    col(Task.user_id),
    priority_rank(col(Task.priority)),
    col(Task.id),
    info={"compare": False},
)
Index(
    "ix_tasks_user_id_lower_title_id",
    col(Task.user_id),
    func.lower(col(Task.title)),
    col(Task.id),
)
# Read backwards, the due_date index above puts tasks without a due date first; they come
# last in both directions. SQLite can read that order from the index above, PostgreSQL cannot.
Index(
    "ix_tasks_user_id_due_date_desc_id",
    col(Task.user_id),
    col(Task.due_date).desc().nulls_last(),
    col(Task.id).desc(),
).ddl_if(dialect="postgresql")
