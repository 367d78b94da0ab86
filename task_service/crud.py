"""Database operations of the task service.

Every write is one statement that checks ownership and changes the row together, so no write
acts on a stale read: a toggle flips the value the row holds at that moment (concurrent
toggles all count) and a PUT or PATCH changes only the fields it names. Writes to the same
field still end with the last one: a task sent back whole carries `completed`, so it undoes
a toggle that landed just before it.

Every statement runs on a connection in autocommit: one statement is atomic on its own and
committed before its answer comes back, so no BEGIN and COMMIT round trips wrap it. Each
function returns rows of the columns TaskPublic names, never ORM objects.

A list's total comes from its page when the page is short (and not after a cursor);
otherwise, filtered by no more than status and priority, from the counts the database keeps
in `task_counts` (up to six rows summed, in the page's own statement); with a tag or text
filter, from COUNT(*).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    SQLColumnExpression,
    String,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    not_,
    or_,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import UnaryExpression
from sqlmodel import select

from shared.db import Database, utcnow
from task_service.models import PRIORITIES, Task, TaskCount, metadata, priority_rank
from task_service.schemas import (
    ListPosition,
    SortField,
    SortOrder,
    TaskCreate,
    TaskListQuery,
    TaskPublic,
)

# A row of the columns TaskPublic names, in its order (a SQLAlchemy Row or an asyncpg Record).
TaskRow = Sequence[Any]


async def create_task(database: Database, *, user_id: str, data: TaskCreate) -> TaskRow:
    now = utcnow()
    values = {**data.model_dump(), "user_id": user_id, "created_at": now, "updated_at": now}
    (task,) = await database.rows(_INSERT, values)
    return task


async def get_task(database: Database, *, user_id: str, task_id: int) -> TaskRow | None:
    """The task, or None when it does not exist or belongs to someone else."""
    return _first(await database.rows(_GET, {"task_id": task_id, "owner": user_id}))


def _first(rows: Sequence[TaskRow]) -> TaskRow | None:
    return rows[0] if rows else None


async def list_tasks(
    database: Database, *, user_id: str, query: TaskListQuery
) -> tuple[Sequence[TaskRow], int]:
    """One page of the user's tasks (rows of the columns TaskPublic names), and how many
    tasks match in all."""
    # Each statement on its own, with no transaction around them: a total that a write
    # between them makes disagree with the page is caught below.
    shape = _ListShape.of(query, database.kind)
    values = _list_values(user_id, query, database.kind)
    rows = await database.rows(_page_statement(shape), values)
    kept: int | None = None
    if shape.keeps_total:
        # Each row ends with the kept total: the page and its total in one round trip.
        kept = rows[0][-1] if rows else None
        tasks = [row[:-1] for row in rows]
    else:
        tasks = list(rows)
    position = query.position
    if len(tasks) < query.limit and position is not None and _before_missing_due_dates(position):
        # The page ran out of due dates: tasks without one come next, in id order.
        rest = {**values, "limit": query.limit - len(tasks)}
        tasks += await database.rows(_no_due_date_statement(shape), rest)
    if position is None:
        # A short page that is not past the end tells the total by itself.
        if len(tasks) < query.limit and (tasks or query.offset == 0):
            return tasks, query.offset + len(tasks)
        rows_before = query.offset
    else:
        rows_before = None  # how many tasks came before a cursor is not known
    if shape.keeps_total:
        if kept is None:  # an empty page carries no total
            ((kept,),) = await database.rows(_kept_total_statement(shape), values)
        if _agrees_with_page(kept, rows_before, len(tasks)):
            return tasks, kept
    ((total,),) = await database.rows(_count_statement(shape), values)
    return tasks, total


def list_page_statement(
    *, user_id: str, query: TaskListQuery, dialect: str = "postgresql"
) -> Select[Any]:
    """The statement for one page of a list, its values bound (public: the benchmark
    explains what is sent).

    A page after a cursor starts at the cursor's key in the sort's index, which costs the same
    however deep the page is; an offset reads and skips the rows before it.
    """
    statement = _page_statement(_ListShape.of(query, dialect))
    return statement.params(_list_values(user_id, query, dialect))


@dataclass(frozen=True)
class _ListShape:
    """What a list's SQL depends on. The rest (the user, the page, the priority, the tag, the
    search words, the cursor's position) are bound values.

    Lists of one shape share their statements, built once: building a statement and its
    cache key cost more than running it.
    """

    dialect: str
    status: str
    priority: bool
    tag: bool
    q: bool
    sort: SortField
    direction: SortOrder
    # None: no cursor; "key": after a sort key and id; "id": among tasks without a due date.
    after: Literal["key", "id"] | None

    @property
    def keeps_total(self) -> bool:
        """Whether the counts the database keeps give this list's total (no tag, no text)."""
        return not (self.tag or self.q)

    @classmethod
    def of(cls, query: TaskListQuery, dialect: str) -> _ListShape:
        position = query.position
        after: Literal["key", "id"] | None = None
        if position is not None:
            after = "id" if position.key is None else "key"
        return cls(
            dialect,
            query.status,
            query.priority is not None,
            query.tag is not None,
            query.q is not None,
            query.sort,
            query.direction,
            after,
        )


def _list_values(user_id: str, query: TaskListQuery, dialect: str) -> dict[str, Any]:
    """The values a list's statements bind."""
    values: dict[str, Any] = {"user_id": user_id, "limit": query.limit, "offset": query.offset}
    if query.priority is not None:
        values["priority"] = query.priority
    if query.tag is not None:
        # PostgreSQL tests containment of an array; SQLite compares each element.
        values["tag"] = [query.tag] if dialect == "postgresql" else query.tag
    if query.q is not None:
        values["q"] = _like_escaped(query.q)
    position = query.position
    if position is not None:
        values["after_id"] = position.id
        key: Any = position.key
        if position.sort == "priority":
            key = PRIORITIES.index(key) + 1  # the rank priority_rank() gives it
        values["after_key"] = key
    return values


def _like_escaped(text: str) -> str:
    """`text` to be matched literally by LIKE ... ESCAPE '/', as SQLAlchemy's autoescape does
    (which takes literal strings only)."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


@functools.cache
def _page_statement(shape: _ListShape) -> Select[Any]:
    """A page of TaskPublic's columns; where the kept counts give the total, each row ends
    with it.

    The total is a subquery the database runs once per statement, from the snapshot the
    page is read from: a full page needs no second round trip for it, and a short one
    (whose length is its total) pays for summing a few count rows.
    """
    columns: list[Any] = list(_LISTED_COLUMNS)
    if shape.keeps_total:
        columns.append(_kept_total_statement(shape).scalar_subquery().label("kept_total"))
    statement: Select[Any] = (
        select(*columns)
        .where(*_filters(shape), *_after(shape))
        .order_by(*_ordering(shape))
        .limit(bindparam("limit", type_=Integer))
    )
    if shape.after is None:
        statement = statement.offset(bindparam("offset", type_=BigInteger))
    return statement


def _before_missing_due_dates(position: ListPosition) -> bool:
    """Whether the tasks without a due date are still to come after this position."""
    return position.sort == "due_date" and position.key is not None


@functools.cache
def _no_due_date_statement(shape: _ListShape) -> Select[Any]:
    """The first tasks without a due date, which follow every dated one in both orders."""
    statement: Select[Any] = (
        select(*_LISTED_COLUMNS)
        .where(*_filters(shape), _COLUMNS.due_date.is_(None))
        .order_by(*_ordering(shape))
        .limit(bindparam("limit", type_=Integer))
    )
    return statement


@functools.cache
def _count_statement(shape: _ListShape) -> Select[Any]:
    return select(func.count()).select_from(_TASKS).where(*_filters(shape))


def _after(shape: _ListShape) -> list[ColumnElement[bool]]:
    """The rows that come after the cursor's position in its order.

    One row comparison, `(key, id) > (:key, :id)`, which an index on (user_id, key, id) reads
    as a range starting at the position; the equivalent OR of two comparisons it cannot.
    """
    if shape.after is None:
        return []
    later = operator.gt if shape.direction == "asc" else operator.lt
    after_id = bindparam("after_id", type_=_COLUMNS.id.type)
    if shape.after == "id":  # among the tasks without a due date, which only id orders
        return [_COLUMNS.due_date.is_(None), later(_COLUMNS.id, after_id)]
    key_column = _SORT_KEYS[shape.sort]
    key: Any
    if shape.sort == "title":
        # The database lowers the title as the index does; Python's lower() may differ.
        key = func.lower(bindparam("after_key", type_=String))
    elif shape.sort == "priority":
        key = bindparam("after_key", type_=Integer)
    else:
        key = bindparam("after_key", type_=_COLUMNS[shape.sort].type)
    if shape.dialect == "sqlite" and shape.sort in ("priority", "title"):
        # SQLite searches an index on an expression for `expr >= ?`, not for a row value: it
        # starts at the key and skips the ties before the position (other tasks of the same
        # priority, titles that differ in case).
        at_or_after = operator.ge if shape.direction == "asc" else operator.le
        return [
            at_or_after(key_column, key),
            or_(later(key_column, key), later(_COLUMNS.id, after_id)),
        ]
    # A row whose due date is NULL compares as NULL, so it never passes: list_tasks reads those.
    return [later(tuple_(key_column, _COLUMNS.id), tuple_(key, after_id))]


@functools.cache
def _kept_total_statement(shape: _ListShape) -> Select[Any]:
    """The total for status and priority filters, from the counts the database keeps: a sum
    of at most six rows (two states by three priorities); 0 when the user has none."""
    conditions = [_COUNT_COLUMNS.user_id == bindparam("user_id", type_=String)]
    if shape.status != "all":
        conditions.append(_COUNT_COLUMNS.completed.is_(shape.status == "completed"))
    if shape.priority:
        conditions.append(_COUNT_COLUMNS.priority == bindparam("priority", type_=String))
    # sum() of a BIGINT is a NUMERIC on PostgreSQL: cast back, for an int rather than a Decimal.
    return select(cast(func.coalesce(func.sum(_COUNT_COLUMNS.count), 0), BigInteger)).where(
        *conditions
    )


def _agrees_with_page(total: int, rows_before: int | None, rows: int) -> bool:
    """Whether a kept total is possible given the page just read.

    Counts go missing or stale when rows are written with the triggers disabled (until
    recount_tasks() runs). A total that contradicts the page is then caught, and the caller
    counts for real: a full page proves at least offset + rows tasks, an empty page past
    the end at most offset. After a cursor (`rows_before` unknown) the page proves only that
    there are at least its rows.
    """
    if rows_before is None:
        return total >= rows
    if rows == 0:
        return total <= rows_before
    return total >= rows_before + rows


async def update_task(
    database: Database, *, user_id: str, task_id: int, values: dict[str, Any]
) -> TaskRow | None:
    """Set the given fields; None when the user has no such task. No fields, no change."""
    if not values:
        return await get_task(database, user_id=user_id, task_id=task_id)
    return await _update(database, user_id, task_id, **values)


async def toggle_completed(database: Database, *, user_id: str, task_id: int) -> TaskRow | None:
    """Flip `completed` in the database, so concurrent toggles each count."""
    values = {"task_id": task_id, "owner": user_id, "now": utcnow()}
    return _first(await database.rows(_TOGGLE, values))


async def delete_task(database: Database, *, user_id: str, task_id: int) -> bool:
    """True when the user's task existed and is gone."""
    return bool(await database.rows(_DELETE, {"task_id": task_id, "owner": user_id}))


async def delete_completed(database: Database, *, user_id: str) -> int:
    """Delete the user's completed tasks; how many there were.

    The delete trigger keeps `task_counts` right, one update per priority, locking the
    count rows in key order as every other writer does (migration 0005).
    """
    statement = delete(_TASKS).where(_COLUMNS.user_id == user_id, _COLUMNS.completed.is_(True))
    async with database.autocommit.connect() as connection:
        result = await connection.execute(statement)
    return result.rowcount


async def _update(database: Database, user_id: str, task_id: int, **values: Any) -> TaskRow | None:
    statement = (
        update(_TASKS)
        .where(_COLUMNS.id == task_id, _COLUMNS.user_id == user_id)
        .values(**values, updated_at=utcnow())
        .returning(*_LISTED_COLUMNS)
    )
    async with database.autocommit.connect() as connection:
        return (await connection.execute(statement)).one_or_none()


def _filters(shape: _ListShape) -> list[ColumnElement[bool]]:
    conditions = [_COLUMNS.user_id == bindparam("user_id", type_=String)]
    if shape.status != "all":
        conditions.append(_COLUMNS.completed.is_(shape.status == "completed"))
    if shape.priority:
        conditions.append(_COLUMNS.priority == bindparam("priority", type_=String))
    if shape.tag:
        conditions.append(_has_tag(shape.dialect))
    if shape.q:
        words = bindparam("q", type_=String)
        conditions.append(
            or_(
                _COLUMNS.title.icontains(words, escape="/"),
                _COLUMNS.description.icontains(words, escape="/"),
            )
        )
    return conditions


def _has_tag(dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return type_coerce(_COLUMNS.tags, JSONB()).contains(bindparam("tag", type_=JSONB()))
    # SQLite has no containment operator: look through the array's elements instead.
    elements = func.json_each(_COLUMNS.tags).table_valued("value")
    return exists().where(elements.c.value == bindparam("tag", type_=String))


# The tables' own columns, not the ORM's attributes: a list's statements then skip the ORM's
# compiling and loading, and give rows.
_TASKS = metadata.tables[Task.__tablename__]
_COLUMNS = _TASKS.c
_COUNT_COLUMNS = metadata.tables[TaskCount.__tablename__].c
_LISTED_COLUMNS = [_COLUMNS[name] for name in TaskPublic.model_fields]
# The statements of the most frequent operations, built once (Database.rows compiles each
# once); values are bound per request. The insert names what create_task gives: every
# column but the id, which the database assigns.
_OWN_TASK = (
    _COLUMNS.id == bindparam("task_id", type_=_COLUMNS.id.type),
    _COLUMNS.user_id == bindparam("owner", type_=String),
)
_CREATED = (*TaskCreate.model_fields, "user_id", "created_at", "updated_at")
_INSERT = (
    insert(_TASKS)
    .values({name: bindparam(name, type_=_COLUMNS[name].type) for name in _CREATED})
    .returning(*_LISTED_COLUMNS)
)
_GET = select(*_LISTED_COLUMNS).where(*_OWN_TASK)
_TOGGLE = (
    update(_TASKS)
    .where(*_OWN_TASK)
    .values(completed=not_(_COLUMNS.completed), updated_at=bindparam("now"))
    .returning(*_LISTED_COLUMNS)
)
_DELETE = delete(_TASKS).where(*_OWN_TASK).returning(_COLUMNS.id)

# Each key, with the user first and id last, is an index (models.Task): a page is read in
# order and the scan stops at the limit. The keys must stay the indexed expressions. Built
# once: SQL expressions are immutable, and building the CASE costs every list request.
_SORT_KEYS: dict[str, SQLColumnExpression[Any]] = {
    "created_at": _COLUMNS.created_at,
    "updated_at": _COLUMNS.updated_at,
    "due_date": _COLUMNS.due_date,
    "priority": priority_rank(_COLUMNS.priority),
    "title": func.lower(_COLUMNS.title),
}


def _ordering(shape: _ListShape) -> list[UnaryExpression[Any]]:
    key = _SORT_KEYS[shape.sort]
    if shape.direction == "asc":
        first, tie_break = key.asc(), _COLUMNS.id.asc()
    else:
        first, tie_break = key.desc(), _COLUMNS.id.desc()
    # Only due_date can be NULL; tasks without one come last in either direction.
    return [first.nulls_last() if shape.sort == "due_date" else first, tie_break]
