"""FastAPI side of token verification: the bearer dependency both services use."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from shared.errors import ApiError, ErrorCode
from shared.tokens import InvalidTokenError, Principal, SigningKeysUnavailableError, TokenVerifier

# tokenUrl is the gateway's login route, so the Authorize button of /docs signs in there.
bearer_scheme = OAuth2PasswordBearer(tokenUrl="/auth/login", auto_error=False)


def unauthorized(
    detail: str, *, invalid_token: bool = False, code: ErrorCode | None = None
) -> ApiError:
    """A 401 with its Bearer challenge; the code defaults to what `invalid_token` says."""
    challenge = 'Bearer error="invalid_token"' if invalid_token else "Bearer"
    code = code or (ErrorCode.INVALID_TOKEN if invalid_token else ErrorCode.NOT_AUTHENTICATED)
    return ApiError(code, detail, headers={"WWW-Authenticate": challenge})


async def get_principal(
    request: Request, token: Annotated[str | None, Depends(bearer_scheme)]
) -> Principal:
    """The verified caller, or 401 (bad token) / 503 (signing keys unreachable)."""
    if not token:
        raise unauthorized("Not authenticated")
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        return await verifier.verify(token)
    except InvalidTokenError:
        raise unauthorized("Invalid or expired token", invalid_token=True) from None
    except SigningKeysUnavailableError:
        raise ApiError(
            ErrorCode.SERVICE_UNAVAILABLE,
            "Token signing keys are unavailable, retry shortly",
            headers={"Retry-After": "5"},
        ) from None


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
