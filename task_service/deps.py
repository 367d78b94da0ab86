"""Dependencies of the task routes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError

from shared.auth import BEARER_SCHEME, verify_bearer
from shared.db import Database
from shared.deps import service_state
from shared.tokens import MAX_SUBJECT_LENGTH
from task_service.schemas import MAX_BIGINT, TaskClearQuery, TaskListQuery

T = TypeVar("T")

# Dependencies are coroutines even when they await nothing: FastAPI runs a plain function in
# a worker thread, a hand-off that costs every request more than the function itself.


@dataclass(frozen=True, slots=True)
class TaskOwner:
    """The caller, proven to be the path's user, and the service's database."""

    user_id: str
    database: Database


# The path's user id, checked only after the token: FastAPI validates a dependency's own
# parameters before calling it, so a constrained `Path` would answer a 422 before the 401.
# `_USER_ID` checks the constraints, and its own JSON schema documents them.
_USER_ID: TypeAdapter[str] = TypeAdapter(
    Annotated[str, StringConstraints(min_length=1, max_length=MAX_SUBJECT_LENGTH)]
)
_USER_ID_LENGTHS = {key: value for key, value in _USER_ID.json_schema().items() if key != "type"}


class _TaskOwnerScheme(OAuth2PasswordBearer):
    """The bearer scheme of the task routes, as `shared.auth.bearer_scheme` documents it,
    that also proves the token's subject is the path's user.

    The scheme itself is the dependency of every task route: each dependency FastAPI
    resolves costs every request more than most of them do, so this one reads and verifies
    the token, the database comes with the owner, and the list's query is read by the route.
    """

    # It takes the path's user id besides the request: not the signature it overrides.
    async def __call__(  # type: ignore[override]
        self,
        request: Request,
        user_id: Annotated[
            str,
            Path(
                description="The signed-in user's id (the token's subject)",
                json_schema_extra=_USER_ID_LENGTHS,
            ),
        ],
    ) -> TaskOwner:
        """The path's user once the token proves it is the caller: 401 first, then 422 for
        a user id no token could name, then 403."""
        state = service_state(request.app)
        principal = await verify_bearer(state.verifier, await super().__call__(request))
        if principal.user_id != user_id:
            # A verified subject is a valid user id: only another one needs checking.
            _validated(_USER_ID.validate_python, user_id, "path", "user_id")
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail="The token does not grant access to this user's tasks",
            )
        return TaskOwner(user_id, state.database)


task_owner = _TaskOwnerScheme(**BEARER_SCHEME)


Owner = Annotated[TaskOwner, Depends(task_owner)]
TaskId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="The task's id")]


def _refuse_repeats(request: Request, names: Iterable[str]) -> None:
    """A 422 for any of these query parameters given more than once.

    FastAPI keeps the last of a repeated parameter; `?tag=a&tag=b` would then quietly mean
    `?tag=b`.
    """
    if len(request.query_params) == len(request.query_params.multi_items()):
        return  # no name given twice: the usual case, decided without counting
    given = Counter(name for name, _ in request.query_params.multi_items())
    repeated = [name for name in names if given[name] > 1]
    if repeated:
        raise RequestValidationError(
            [
                {
                    "type": "repeated",
                    "loc": ("query", name),
                    "msg": "must be given at most once",
                    "input": request.query_params.getlist(name),
                }
                for name in repeated
            ]
        )


def _validated(validate: Callable[[Any], T], value: Any, *location: str) -> T:
    """`value` as `validate` returns it, or the 422 FastAPI would give it at `location`."""
    try:
        return validate(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError(
            [{**error, "loc": (*location, *error["loc"])} for error in errors]
        ) from None


def list_query(request: Request) -> TaskListQuery:
    """The list's parameters, each given at most once (a 422 otherwise).

    Validated by the model itself, by the route rather than as a dependency: FastAPI's
    reading of a query model field by field cost an eighth of a list request.
    LIST_QUERY_PARAMETERS documents them as FastAPI would.
    """
    _refuse_repeats(request, TaskListQuery.model_fields)
    return _validated(TaskListQuery.model_validate, dict(request.query_params), "query")


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI's query parameters for a model's fields, as FastAPI writes them for a
    `Query()` model (for routes that validate the model themselves)."""
    properties = model.model_json_schema()["properties"]
    return [
        {
            "name": name,
            "in": "query",
            "required": field.is_required(),
            "schema": properties[name],
            **({"description": field.description} if field.description else {}),
        }
        for name, field in model.model_fields.items()
    ]


LIST_QUERY_PARAMETERS = query_parameters(TaskListQuery)


async def clear_query(
    request: Request, query: Annotated[TaskClearQuery, Query()]
) -> TaskClearQuery:
    """The filter of a bulk delete, given once: `?status=all&status=completed` is a 422."""
    _refuse_repeats(request, TaskClearQuery.model_fields)
    return query


ClearQuery = Annotated[TaskClearQuery, Depends(clear_query)]
