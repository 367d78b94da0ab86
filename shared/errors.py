"""The API's error catalogue and format: `{"detail": ..., "code": ...}` for every failure.

`detail` is FastAPI's (a sentence, or the list of a 422's validation errors); `code` is one of
`ErrorCode`, stable and meant for programs: clients tell errors apart by `code`, never by
the words of `detail`.
"""

from __future__ import annotations

import json
import logging
import math
import traceback
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.metrics import DATABASE_ERRORS
from shared.route_index import route_index

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 5


class ErrorCode(StrEnum):
    """Every machine-readable error code, with its HTTP status and a one-line description.

    One line per code, in alphabetical order; the README's list of codes is checked against
    this table by the test suite.
    """

    status: int
    description: str

    def __new__(cls, value: str, status: int, description: str) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.description = description
        return member

    BAD_REQUEST = "bad_request", 400, "The body is not UTF-8, cut short or malformed"
    BODY_TIMEOUT = "body_timeout", 408, "The request body did not arrive in time"
    BODY_TOO_LARGE = "body_too_large", 413, "The request body is over the gateway's limit"
    EMAIL_TAKEN = "email_taken", 409, "An account with this email already exists"
    FORBIDDEN = "forbidden", 403, "The token is not for this user's resources"
    HEADER_TIMEOUT = "header_timeout", 408, "The request headers did not arrive in time"
    HEADERS_TOO_LARGE = "headers_too_large", 431, "The request's headers are too large"
    INTERNAL_ERROR = "internal_error", 500, "An unexpected failure; the log has details"
    INVALID_CREDENTIALS = "invalid_credentials", 401, "Wrong email or password"
    INVALID_REFRESH_TOKEN = "invalid_refresh_token", 401, "Refresh token bad, expired or revoked"
    INVALID_TOKEN = "invalid_token", 401, "Bad access token, or its account is gone"
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, "The path does not serve this method"
    NOT_AUTHENTICATED = "not_authenticated", 401, "No bearer token was sent"
    NOT_FOUND = "not_found", 404, "No such route"
    RATE_LIMITED = "rate_limited", 429, "Too many requests; see Retry-After"
    REFRESH_TOKEN_REUSED = "refresh_token_reused", 401, "A rotated refresh token came back"
    SERVICE_UNAVAILABLE = "service_unavailable", 503, "Database or signing keys unreachable"
    TASK_NOT_FOUND = "task_not_found", 404, "No such task among the user's"
    TOKEN_EXPIRED = "token_expired", 401, "The access token has expired"
    TOO_MANY_CONNECTIONS = "too_many_connections", 503, "The server has its most connections open"
    UPSTREAM_BUSY = "upstream_busy", 503, "Every connection to a service is busy"
    UPSTREAM_TIMEOUT = "upstream_timeout", 504, "A service did not answer in time"
    UPSTREAM_UNREACHABLE = "upstream_unreachable", 502, "A service cannot be reached"
    VALIDATION_ERROR = "validation_error", 422, "The request does not fit the schema"


# The code of an HTTPException raised without one (by FastAPI, Starlette or a library).
_CODE_FOR_STATUS = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.NOT_AUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    408: ErrorCode.BODY_TIMEOUT,
    413: ErrorCode.BODY_TOO_LARGE,
    422: ErrorCode.VALIDATION_ERROR,
    429: ErrorCode.RATE_LIMITED,
    431: ErrorCode.HEADERS_TOO_LARGE,
    500: ErrorCode.INTERNAL_ERROR,
    502: ErrorCode.UPSTREAM_UNREACHABLE,
    503: ErrorCode.SERVICE_UNAVAILABLE,
    504: ErrorCode.UPSTREAM_TIMEOUT,
}


def code_for_status(status_code: int) -> ErrorCode:
    """The catalogue's generic code for an HTTP error status."""
    if status_code in _CODE_FOR_STATUS:
        return _CODE_FOR_STATUS[status_code]
    return ErrorCode.INTERNAL_ERROR if status_code >= 500 else ErrorCode.BAD_REQUEST


class ApiError(HTTPException):
    """An error answer named by its code; status and detail default from the catalogue."""

    def __init__(
        self,
        code: ErrorCode,
        detail: str | None = None,
        *,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            status_code=status_code or code.status,
            detail=detail or code.description,
            headers=headers,
        )
        self.code = code


def error_body(code: ErrorCode, detail: Any = None) -> dict[str, Any]:
    """The API's error body, for code that answers without raising (ASGI middleware)."""
    return {"detail": code.description if detail is None else detail, "code": code.value}


def error_response(
    code: ErrorCode,
    detail: Any = None,
    *,
    status_code: int | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSONResponse with the API's error body."""
    return _UnicodeSafeJSONResponse(
        error_body(code, detail), status_code=status_code or code.status, headers=headers
    )


class ErrorResponse(BaseModel):
    """The body of every error response."""

    detail: str
    code: ErrorCode = Field(description="Stable, machine-readable; tell errors apart by it")


class ValidationErrorResponse(BaseModel):
    """A 422's body: FastAPI's list of validation errors, and the code `validation_error`."""

    detail: list[dict[str, Any]]
    code: ErrorCode = Field(description="Always `validation_error`")


def error_responses(*errors: ErrorCode | int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries naming the error codes a route can answer with.

    A bare status stands for its generic code (`code_for_status`).
    """
    by_status: dict[int, list[ErrorCode]] = {}
    for error in errors:
        code = error if isinstance(error, ErrorCode) else code_for_status(error)
        by_status.setdefault(code.status, []).append(code)
    responses: dict[int | str, dict[str, Any]] = {}
    for status_code, codes in sorted(by_status.items()):
        model = ValidationErrorResponse if status_code == 422 else ErrorResponse
        responses[status_code] = {
            "model": model,
            "description": "; ".join(f"`{code}`: {code.description}" for code in codes),
            "content": {
                "application/json": {
                    "examples": {
                        code.value: {
                            "summary": code.description,
                            "value": error_body(
                                code, [] if status_code == 422 else code.description
                            ),
                        }
                        for code in codes
                    }
                }
            },
        }
    return responses


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


async def http_error(request: Request, exc: Exception) -> Response:
    """Any HTTPException in the API's format: its own code when it is an ApiError."""
    if not isinstance(exc, StarletteHTTPException):
        return await unexpected_error(request, exc)
    headers = getattr(exc, "headers", None)
    if exc.status_code in {204, 304} or exc.status_code < 200:
        return Response(status_code=exc.status_code, headers=headers)
    code = exc.code if isinstance(exc, ApiError) else code_for_status(exc.status_code)
    return error_response(code, exc.detail, status_code=exc.status_code, headers=headers)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, able to echo input that is not valid Unicode.

    FastAPI's own handler fails with a 500 when a 422 repeats a lone surrogate it was sent,
    and echoes an uploaded file's internals.
    """
    errors = exc.errors() if isinstance(exc, RequestValidationError) else [{"msg": str(exc)}]
    # A file sent where text was expected would be echoed with the internals of its upload.
    errors = [
        {key: value for key, value in error.items() if key != "input"}
        if isinstance(error.get("input"), UploadFile)
        else error
        for error in errors
    ]
    try:
        return error_response(ErrorCode.VALIDATION_ERROR, jsonable_encoder(errors))
    except RecursionError:
        # Input nested deeper than the encoders can walk: name the errors without echoing it.
        bare = [{key: value for key, value in error.items() if key != "input"} for error in errors]
        return error_response(ErrorCode.VALIDATION_ERROR, jsonable_encoder(bare))


def database_unavailable_response() -> JSONResponse:
    return error_response(
        ErrorCode.SERVICE_UNAVAILABLE,
        "Database unavailable, retry shortly",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    """503 when the database cannot be reached; any other database failure is a 500.

    A driver's error message may quote a query's values (emails, password hashes), so the
    log gets the statement, SQLSTATE and stack frames, never the message.
    """
    # Imported here: the gateway uses this module and has no database (nor its ORM).
    from sqlalchemy.exc import DBAPIError  # noqa: PLC0415

    from shared.db import is_database_unavailable  # noqa: PLC0415

    if is_database_unavailable(exc):
        DATABASE_ERRORS.labels("unavailable").inc()
        logger.warning("Database unavailable: %s", type(exc).__name__)
        return database_unavailable_response()
    if not isinstance(exc, DBAPIError):
        return await unexpected_error(request, exc)
    DATABASE_ERRORS.labels("error").inc()
    logger.error(
        "Database error %s (SQLSTATE %s) on %s %s; statement: %s\n%s",
        type(exc.orig).__name__,
        getattr(exc.orig, "sqlstate", "-"),
        request.method,
        request.url.path,
        exc.statement,
        "".join(traceback.format_tb(exc.__traceback__)),
    )
    return error_response(ErrorCode.INTERNAL_ERROR, "Internal Server Error")


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """A bare 500 in the API's error format; the traceback goes to the log only."""
    logger.error("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(ErrorCode.INTERNAL_ERROR, "Internal Server Error")


def _allowed_methods(app: FastAPI, path: str) -> set[str]:
    """Every method some route serves at `path`.

    Starlette's own 405 names only the methods of the first route matching the path, while
    one path often has several routes (GET and POST of a collection).
    """
    methods: set[str] = set()
    for route in route_index(app):
        if route.pattern.match(path):
            methods |= route.methods
    return methods


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    allowed = _allowed_methods(request.app, request.url.path)
    headers = {"Allow": ", ".join(sorted(allowed))} if allowed else None
    return error_response(ErrorCode.METHOD_NOT_ALLOWED, "Method Not Allowed", headers=headers)


def _document_validation_code(app: FastAPI) -> None:
    """Name `code` in the 422 schema FastAPI documents by itself on validated routes."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            validation = schema.get("components", {}).get("schemas", {}).get("HTTPValidationError")
            if validation is not None:
                validation.setdefault("properties", {})["code"] = {
                    "type": "string",
                    "enum": [ErrorCode.VALIDATION_ERROR.value],
                    "title": "Code",
                }
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI, *, database: bool = True) -> None:
    """Every error in the API's format, with its code; a 405 names every method the path
    serves; with `database`, database outages become 503s.

    Anything else unexpected is `UnhandledErrorMiddleware`'s to answer.
    """
    if database:
        from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

        for exc_class in (SQLAlchemyError, OSError, TimeoutError):
            app.add_exception_handler(exc_class, database_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(405, _method_not_allowed)
    _document_validation_code(app)
