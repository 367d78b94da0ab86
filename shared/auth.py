"""FastAPI side of token verification: the bearer dependency both services use.

The dependency chain answers 401 (no or bad token) before anything else looks at the
request: routes then check 403 (not this user's) and 404 (no such resource of theirs).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from shared.deps import service_state
from shared.errors import ApiError, ErrorCode
from shared.metrics import TOKEN_REFUSALS
from shared.tokens import (
    InvalidTokenError,
    Principal,
    SigningKeysUnavailableError,
    TokenExpiredError,
    TokenVerifier,
)

logger = logging.getLogger(__name__)

# tokenUrl is the OAuth2 token endpoint (through the gateway), so the Authorize button of
# /docs signs in there. Every scheme made with these is the same one in the OpenAPI
# documents (the task routes' scheme is a subclass: task_service/deps.py).
BEARER_SCHEME: dict[str, Any] = {
    "tokenUrl": "/auth/token",
    "scheme_name": "OAuth2PasswordBearer",
    "auto_error": False,
}
bearer_scheme = OAuth2PasswordBearer(**BEARER_SCHEME)


def unauthorized(
    detail: str, *, invalid_token: bool = False, code: ErrorCode | None = None
) -> ApiError:
    """A 401 with its Bearer challenge; the code defaults to what `invalid_token` says."""
    challenge = 'Bearer error="invalid_token"' if invalid_token else "Bearer"
    code = code or (ErrorCode.INVALID_TOKEN if invalid_token else ErrorCode.NOT_AUTHENTICATED)
    return ApiError(code, detail, headers={"WWW-Authenticate": challenge})


@dataclass
class RefusalLog:
    """Says at INFO why tokens are refused, at most `burst` lines per reason per `window`.

    An operator can then tell an issuer off by a slash from a wrong secret, while a flood of
    bad tokens costs a few lines a minute. Refusals left out are counted, and the count goes
    with the next line of that reason. The token itself is never logged.
    """

    burst: int = 10
    window: float = 60.0
    # reason -> (start of its window, lines logged in it, refusals left out since the last line)
    _counts: dict[str, tuple[float, int, int]] = field(default_factory=dict)

    def record(self, refusal: InvalidTokenError) -> None:
        now = time.monotonic()
        started, logged, left_out = self._counts.get(refusal.reason, (now, 0, 0))
        if now - started >= self.window:
            started, logged = now, 0
        if logged >= self.burst:
            self._counts[refusal.reason] = (started, logged, left_out + 1)
            return
        self._counts[refusal.reason] = (started, logged + 1, 0)
        more = f" (and {left_out} more since the last such line)" if left_out else ""
        logger.info("Token refused: %s%s", refusal, more)


refusal_log = RefusalLog()


async def verify_bearer(verifier: TokenVerifier, token: str | None) -> Principal:
    """The verified caller of a bearer token, or 401 (bad token) / 503 (signing keys
    unreachable)."""
    if not token:
        TOKEN_REFUSALS.labels("no token").inc()
        raise unauthorized("Not authenticated")
    try:
        return await verifier.verify(token)
    except InvalidTokenError as refusal:
        TOKEN_REFUSALS.labels(refusal.reason).inc()
        refusal_log.record(refusal)
        if isinstance(refusal, TokenExpiredError):
            raise unauthorized(
                "The access token has expired", invalid_token=True, code=ErrorCode.TOKEN_EXPIRED
            ) from None
        raise unauthorized("Invalid access token", invalid_token=True) from None
    except SigningKeysUnavailableError:
        raise ApiError(
            ErrorCode.SERVICE_UNAVAILABLE,
            "Token signing keys are unavailable, retry shortly",
            headers={"Retry-After": "5"},
        ) from None


async def get_principal(
    request: Request, token: Annotated[str | None, Depends(bearer_scheme)]
) -> Principal:
    """The bearer dependency: the verified caller, or 401 / 503 (see `verify_bearer`).

    It reads the state from the request rather than through a dependency of its own: each
    dependency FastAPI resolves costs every request more than most of them do.
    """
    return await verify_bearer(service_state(request.app).verifier, token)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
