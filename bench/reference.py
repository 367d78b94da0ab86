"""A reference for the task service: the same SQL and JSON with nothing in between.

Raw ASGI, asyncpg and orjson, served by uvicorn (`python -m uvicorn bench.reference:app`,
with REFERENCE_DATABASE_URL and REFERENCE_SCHEMA). It answers the three requests the
benchmark compares: the list (the statement compiled from task_service/crud.py), create
and toggle (the INSERT and the UPDATE ... RETURNING the service's writes send, built from
the same model). It checks no token and validates nothing: it is what the work costs in
plain Python, the floor the service is measured against, not an API.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import bindparam, insert, not_, update
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlmodel import col
from starlette.types import Receive, Scope, Send

from task_service.crud import list_page_statement
from task_service.models import Task
from task_service.schemas import TaskListQuery

_COLUMNS = [column.name for column in Task.__table__.columns]  # type: ignore[attr-defined]
_TABLE = Task.__table__  # type: ignore[attr-defined]


def _prepared(statement: ClauseElement, *, with_values: bool = False) -> tuple[str, list[Any]]:
    """SQL for asyncpg and its parameters in order: their names, or their values."""
    compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
    assert isinstance(compiled, SQLCompiler)
    names = list(compiled.positiontup or [])
    return str(compiled), [compiled.params[name] for name in names] if with_values else names


# The list's parameters are the page's limit and offset and the user: compiled for a
# stand-in user, whose place then takes each request's.
_ANY_USER = "\0user"
_LIST_SQL, _LIST_PARAMETERS = _prepared(
    list_page_statement(user_id=_ANY_USER, query=TaskListQuery()), with_values=True
)
_CREATE_SQL, _CREATE_NAMES = _prepared(
    insert(_TABLE)
    .values({name: bindparam(name) for name in _COLUMNS if name != "id"})
    .returning(*_TABLE.columns)
)
_TOGGLE_SQL, _TOGGLE_NAMES = _prepared(
    update(_TABLE)
    .where(col(Task.id) == bindparam("task_id"), col(Task.user_id) == bindparam("user_id"))
    .values(completed=not_(col(Task.completed)), updated_at=bindparam("now"))
    .returning(*_TABLE.columns)
)
_state: dict[str, asyncpg.Pool] = {}


def _task(row: asyncpg.Record) -> dict[str, Any]:
    task = dict(row)
    # A list's rows end with the kept total, which the answer does not show.
    task.pop("kept_total", None)
    # jsonb arrives as its text: already JSON.
    task["tags"] = orjson.Fragment(task["tags"])
    return task


async def _list(user_id: str) -> tuple[int, bytes, int]:
    parameters = [user_id if value == _ANY_USER else value for value in _LIST_PARAMETERS]
    rows = await _state["pool"].fetch(_LIST_SQL, *parameters)
    # A short first page is the whole list: its length is the total, as in the service.
    return 200, orjson.dumps([_task(row) for row in rows], option=orjson.OPT_UTC_Z), len(rows)


async def _create(user_id: str, body: bytes) -> tuple[int, bytes, None]:
    data = orjson.loads(body)
    now = datetime.now(UTC)
    due = data.get("due_date")
    values = {
        "user_id": user_id,
        "title": data["title"],
        "description": data.get("description"),
        "completed": False,
        "priority": data.get("priority", "medium"),
        "due_date": datetime.fromisoformat(due) if due else None,
        "tags": orjson.dumps(data.get("tags", [])).decode(),
        "created_at": now,
        "updated_at": now,
    }
    row = await _state["pool"].fetchrow(_CREATE_SQL, *[values[name] for name in _CREATE_NAMES])
    return 201, orjson.dumps(_task(row), option=orjson.OPT_UTC_Z), None


async def _toggle(user_id: str, task_id: str) -> tuple[int, bytes, None]:
    values = {"task_id": int(task_id), "user_id": user_id, "now": datetime.now(UTC)}
    row = await _state["pool"].fetchrow(_TOGGLE_SQL, *[values[name] for name in _TOGGLE_NAMES])
    if row is None:
        return 404, b'{"detail":"Task not found","code":"task_not_found"}', None
    return 200, orjson.dumps(_task(row), option=orjson.OPT_UTC_Z), None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI application."""
    if scope["type"] == "lifespan":
        await receive()  # startup
        _state["pool"] = await asyncpg.create_pool(
            os.environ["REFERENCE_DATABASE_URL"],
            min_size=10,
            max_size=10,
            server_settings={"search_path": os.environ["REFERENCE_SCHEMA"]},
        )
        await send({"type": "lifespan.startup.complete"})
        await receive()  # shutdown
        await _state["pool"].close()
        await send({"type": "lifespan.shutdown.complete"})
        return
    parts = scope["path"].strip("/").split("/")
    method = scope["method"]
    total = None
    if len(parts) == 3 and parts[0] == "api" and parts[2] == "tasks" and method == "GET":
        status, body, total = await _list(parts[1])
    elif len(parts) == 3 and parts[0] == "api" and parts[2] == "tasks" and method == "POST":
        status, body, total = await _create(parts[1], await _read_body(receive))
    elif len(parts) == 5 and parts[0] == "api" and parts[4] == "complete" and method == "PATCH":
        status, body, total = await _toggle(parts[1], parts[3])
    else:
        status, body = 404, b'{"detail":"Not Found","code":"not_found"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if total is not None:
        headers.append((b"x-total-count", b"%d" % total))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
