"""The API's error format: FastAPI's `{"detail": ...}`, for every failure."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from shared.db import is_database_unavailable

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 5


class ErrorResponse(BaseModel):
    """The body of every error response."""

    detail: str


_DESCRIPTIONS = {
    400: "Bad request",
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


def database_unavailable_response() -> JSONResponse:
    return JSONResponse(
        {"detail": "Database unavailable, retry shortly"},
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if is_database_unavailable(exc):
        logger.warning("Database unavailable: %s", type(exc).__name__)
        return database_unavailable_response()
    return await unexpected_error(request, exc)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """A bare 500 in the API's error format; the traceback goes to the log only."""
    logger.error("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "Internal Server Error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Database outages become 503s; anything unexpected a bare 500 without internals."""
    for exc_class in (SQLAlchemyError, OSError, TimeoutError):
        app.add_exception_handler(exc_class, _database_error)
    app.add_exception_handler(Exception, unexpected_error)
