"""Tables of the task service. They live in its own schema (`tasks` by default)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, Integer, MetaData
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.db import NAMING_CONVENTION, UTCDateTime, utcnow
from shared.tokens import MAX_SUBJECT_LENGTH

# The service's own metadata: the auth service's tables never mix with these.
metadata = MetaData(naming_convention=NAMING_CONVENTION)

Priority = Literal["low", "medium", "high"]
PRIORITIES: tuple[str, ...] = get_args(Priority)
TITLE_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 1000


class TaskModel(SQLModel, registry=registry(metadata=metadata)):
    """Base of every task table."""


class Task(TaskModel, table=True):
    """One task of one user. `user_id` is the token's subject; the auth service owns users."""

    __tablename__ = "tasks"
    __table_args__ = (
        # Every list query filters on the user first, then orders by date with id as the
        # tie-break: these serve the default listing and the status filter without a sort.
        Index(None, "user_id", "created_at", "id"),
        Index(None, "user_id", "completed", "created_at", "id"),
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
    priority: str = Field(default="medium", max_length=6)
    due_date: datetime | None = Field(default=None, sa_type=UTCDateTime)
    tags: list[str] = Field(
        default_factory=list,
        sa_type=JSON().with_variant(JSONB(), "postgresql"),
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TaskCount(TaskModel, table=True):
    """How many tasks each user has, and how many are completed.

    Kept by database triggers on `tasks` (see migration 0002), so listing a user's tasks
    never has to count them all to fill in X-Total-Count.
    """

    __tablename__ = "task_counts"

    user_id: str = Field(primary_key=True, max_length=MAX_SUBJECT_LENGTH)
    total: int = Field(default=0, sa_type=BigInteger)
    completed: int = Field(default=0, sa_type=BigInteger)
