"""Every endpoint of the task service.

Each route checks the bearer token (401), then that the path's user is the token's (403),
then that the task is one of theirs (404: other users' tasks are never revealed).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Request, Response, status
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import ApiError, ErrorCode, error_responses
from task_service import crud
from task_service.crud import TaskRow
from task_service.deps import (
    LIST_QUERY_PARAMETERS,
    ClearQuery,
    Owner,
    TaskId,
    TaskOwner,
    list_query,
    task_owner,
)
from task_service.schemas import ListPosition, TaskCreate, TaskPublic, TasksDeleted, TaskUpdate

TOTAL_COUNT_HEADER = "X-Total-Count"
NEXT_CURSOR_HEADER = "X-Next-Cursor"

router = APIRouter(prefix="/api/{user_id}/tasks", tags=["tasks"])

_LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One page of tasks",
        "headers": {
            TOTAL_COUNT_HEADER: {
                "description": "How many tasks match the filters, across all pages",
                "schema": {"type": "integer"},
            },
            NEXT_CURSOR_HEADER: {
                "description": "The `cursor` of the next page; only when this page is full",
                "schema": {"type": "string"},
            },
            "Link": {
                "description": 'The next page\'s URL, relative, as `<...>; rel="next"` '
                "(RFC 8288); only when this page is full",
                "schema": {"type": "string"},
            },
        },
    },
    **error_responses(401, 403, 503),
}
# The names of the columns a list reads, in order (crud.list_tasks selects them so).
_LISTED = tuple(TaskPublic.model_fields)
_TASK_RESPONSES = error_responses(401, 403, ErrorCode.TASK_NOT_FOUND, 503)
_TASK_BODY_RESPONSES = error_responses(400, 401, 403, ErrorCode.TASK_NOT_FOUND, 503)


def _encoded(task: TaskRow) -> dict[str, Any]:
    """A row of TaskPublic's columns, as TaskPublic's JSON object.

    The rows hold TaskPublic's columns in its order, as stored under the table's constraints:
    encoded as they are (orjson, UTC date-times with a Z, naive ones being UTC), they give
    TaskPublic's JSON byte for byte at a fraction of validating each into a model and letting
    FastAPI validate and serialize it again. `response_model` stays on each route, for the
    OpenAPI document.
    """
    # zip() with the names known up front: it reads a Row and a driver's record alike.
    return dict(zip(_LISTED, task, strict=True))


def _json(
    content: Any, status_code: int = status.HTTP_200_OK, headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps(content, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)
    return Response(body, status_code, headers, media_type="application/json")


def _not_found() -> ApiError:
    return ApiError(ErrorCode.TASK_NOT_FOUND, "Task not found")


def _found(task: TaskRow | None, status_code: int = status.HTTP_200_OK) -> Response:
    if task is None:
        raise _not_found()
    return _json(_encoded(task), status_code)


@router.get(
    "",
    response_model=list[TaskPublic],
    responses=_LIST_RESPONSES,
    openapi_extra={"parameters": LIST_QUERY_PARAMETERS},
)
async def list_tasks(owner: Owner, request: Request) -> Response:
    """The user's tasks, filtered, sorted and paged; the total is in `X-Total-Count`.

    A full page names the next one in `X-Next-Cursor` and `Link`.
    """
    return await _list_page(owner, request)


async def _list_page(owner: TaskOwner, request: Request) -> Response:
    """What `list_tasks` answers, also for `ListShortcut`."""
    query = list_query(request)
    tasks, total = await crud.list_tasks(owner.database, user_id=owner.user_id, query=query)
    headers = {TOTAL_COUNT_HEADER: str(total)}
    listed = [_encoded(task) for task in tasks]
    if listed and len(listed) == query.limit:
        cursor = ListPosition.after(listed[-1], query.sort, query.direction).encode()
        headers[NEXT_CURSOR_HEADER] = cursor
        # Relative, so it stays right behind the gateway and any TLS proxy.
        following = request.url.remove_query_params("offset").include_query_params(cursor=cursor)
        headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
    return _json(listed, headers=headers)


# The list's path as the router matches it: the same pattern, from the same template.
_LIST_PATH = compile_path(router.prefix)[0]


class ListShortcut:
    """Answers `GET /api/{user_id}/tasks` as `list_tasks` does, without the router.

    Every client asks for the list on every page it shows, and FastAPI's matching of routes
    and solving of the route's dependency were a fifth of the instructions a list took
    (bench/history.md). Installed in front of the router, inside FastAPI's exception
    handlers (`create_base_app`'s `router_middleware`), it runs the route's own steps: the
    owner's check, then `_list_page`, so its answers, errors included, are the route's, and
    the route stays what the OpenAPI document describes. Every other request, any under a
    root path (which the router strips first), and every request while the app has
    dependency overrides (tests' stand-ins for `task_owner`) go on to the router.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            matched = _LIST_PATH.match(scope["path"])
            if matched is not None and not scope["app"].dependency_overrides:
                request = Request(scope, receive)
                owner = await task_owner(request, matched["user_id"])
                response = await _list_page(owner, request)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskPublic,
    responses=error_responses(400, 401, 403, 503),
)
async def create_task(owner: Owner, body: TaskCreate) -> Response:
    """Add a task. Only `title` is required; unknown fields are ignored."""
    task = await crud.create_task(owner.database, user_id=owner.user_id, data=body)
    return _found(task, status.HTTP_201_CREATED)


@router.delete("", response_model=TasksDeleted, responses=error_responses(401, 403, 503))
async def clear_completed(owner: Owner, query: ClearQuery) -> TasksDeleted:
    """Delete every completed task of the user at once (`?status=completed` is required)."""
    return TasksDeleted(deleted=await crud.delete_completed(owner.database, user_id=owner.user_id))


@router.get("/{task_id}", response_model=TaskPublic, responses=_TASK_RESPONSES)
async def read_task(owner: Owner, task_id: TaskId) -> Response:
    """One task."""
    return _found(await crud.get_task(owner.database, user_id=owner.user_id, task_id=task_id))


@router.put("/{task_id}", response_model=TaskPublic, responses=_TASK_BODY_RESPONSES)
async def replace_task(owner: Owner, task_id: TaskId, body: TaskUpdate) -> Response:
    """Change the fields given and keep the others; null clears `description` or `due_date`.

    The same as PATCH with a body. Unknown fields (and `id`, `user_id`, the timestamps) are
    ignored, so a task as read from this API may be sent back whole.
    """
    values = body.model_dump(exclude_unset=True)
    return _found(
        await crud.update_task(
            owner.database, user_id=owner.user_id, task_id=task_id, values=values
        )
    )


@router.patch("/{task_id}", response_model=TaskPublic, responses=_TASK_BODY_RESPONSES)
async def update_task(
    owner: Owner,
    task_id: TaskId,
    body: Annotated[TaskUpdate | None, Body()] = None,
) -> Response:
    """With a JSON body, change only the fields given; with no body (or `null`), toggle
    `completed`.

    `{}` changes nothing. Unknown fields are ignored.
    """
    if body is None:
        task = await crud.toggle_completed(owner.database, user_id=owner.user_id, task_id=task_id)
    else:
        values = body.model_dump(exclude_unset=True)
        task = await crud.update_task(
            owner.database, user_id=owner.user_id, task_id=task_id, values=values
        )
    return _found(task)


@router.patch("/{task_id}/complete", response_model=TaskPublic, responses=_TASK_RESPONSES)
async def toggle_task(owner: Owner, task_id: TaskId) -> Response:
    """Toggle `completed`: done becomes not done and the other way round."""
    return _found(
        await crud.toggle_completed(owner.database, user_id=owner.user_id, task_id=task_id)
    )


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_TASK_RESPONSES)
async def delete_task(owner: Owner, task_id: TaskId) -> Response:
    """Delete a task for good."""
    if not await crud.delete_task(owner.database, user_id=owner.user_id, task_id=task_id):
        raise _not_found()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
