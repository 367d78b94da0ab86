"""The API's error format: FastAPI's `{"detail": ...}`, for every failure."""

from __future__ import annotations

import json
import logging
import math
import re
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from starlette.routing import compile_path

from shared.db import is_database_unavailable

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 5


class ErrorResponse(BaseModel):
    """The body of every error response."""

    detail: str


_DESCRIPTIONS = {
    400: "The body could not be read (not UTF-8, or cut short)",
    401: "Missing, invalid or expired credentials",
    403: "The token does not grant access to this user's resources",
    404: "Not found",
    409: "Conflict with existing data",
    413: "Request body too large",
    429: "Too many requests; retry after the number of seconds in Retry-After",
    502: "An upstream service is unreachable",
    503: "A dependency (database, signing keys) is unavailable; retry shortly",
    504: "An upstream service timed out",
}


# FastAPI documents 422 by itself for routes it validates; routes that parse their own body
# point at the same schema.
_VALIDATION_ERROR = {
    "description": "Validation Error",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
    },
}


def error_responses(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the error codes a route can answer with."""
    return {
        code: _VALIDATION_ERROR
        if code == 422
        else {"model": ErrorResponse, "description": _DESCRIPTIONS[code]}
        for code in status_codes
    }


def _finite(value: Any) -> Any:
    """`value` with non-finite floats spelled as the text a client sent (`NaN`, `Infinity`).

    Python's JSON parser accepts them in a body, but they have no JSON form to echo them in.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


class _UnicodeSafeJSONResponse(JSONResponse):
    """JSON that cannot fail to encode: lone surrogates in echoed input become `?`, and
    non-finite numbers become strings."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(
            _finite(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
        return text.encode("utf-8", "replace")


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, able to echo input that is not valid Unicode.

    FastAPI's own handler fails with a 500 when a 422 repeats a lone surrogate it was sent.
    """
    errors = exc.errors() if isinstance(exc, RequestValidationError) else [{"msg": str(exc)}]
    try:
        return _UnicodeSafeJSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)
    except RecursionError:
        # Input nested deeper than the encoders can walk: name the errors without echoing it.
        bare = [{key: value for key, value in error.items() if key != "input"} for error in errors]
        return _UnicodeSafeJSONResponse({"detail": jsonable_encoder(bare)}, status_code=422)


def database_unavailable_response() -> JSONResponse:
    return JSONResponse(
        {"detail": "Database unavailable, retry shortly"},
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    """503 when the database cannot be reached; any other database failure is a 500.

    A driver's error message may quote a query's values (emails, password hashes), so the
    log gets the statement, SQLSTATE and stack frames, never the message.
    """
    if is_database_unavailable(exc):
        logger.warning("Database unavailable: %s", type(exc).__name__)
        return database_unavailable_response()
    if not isinstance(exc, DBAPIError):
        return await unexpected_error(request, exc)
    logger.error(
        "Database error %s (SQLSTATE %s) on %s %s; statement: %s\n%s",
        type(exc.orig).__name__,
        getattr(exc.orig, "sqlstate", "-"),
        request.method,
        request.url.path,
        exc.statement,
        "".join(traceback.format_tb(exc.__traceback__)),
    )
    return JSONResponse({"detail": "Internal Server Error"}, status_code=500)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """A bare 500 in the API's error format; the traceback goes to the log only."""
    logger.error("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "Internal Server Error"}, status_code=500)


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _allowed_methods(app: FastAPI, path: str) -> set[str]:
    """Every method some route serves at `path`. FastAPI's GET routes do not answer HEAD,
    so HEAD is named only where a route declares it.

    Starlette's own 405 names only the methods of the first route matching the path, while
    one path often has several routes (GET and POST of a collection).
    """
    index: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "method_index", None)
    if index is None:
        index = [
            (compile_path(template)[0], {m.upper() for m in operations if m in _HTTP_METHODS})
            for template, operations in app.openapi().get("paths", {}).items()
        ]
        app.state.method_index = index
    methods: set[str] = set()
    for pattern, served in index:
        if pattern.match(path):
            methods |= served
    return methods


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    allowed = _allowed_methods(request.app, request.url.path)
    headers = {"Allow": ", ".join(sorted(allowed))} if allowed else None
    return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Database outages become 503s; a 405 names every method the path serves.

    Anything else unexpected is `UnhandledErrorMiddleware`'s to answer.
    """
    for exc_class in (SQLAlchemyError, OSError, TimeoutError):
        app.add_exception_handler(exc_class, database_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(405, _method_not_allowed)
