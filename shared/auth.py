"""FastAPI side of token verification: the bearer dependency both services use."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import OAuth2PasswordBearer

from shared.deps import ServiceStateDep
from shared.tokens import InvalidTokenError, Principal, SigningKeysUnavailableError

# tokenUrl is the gateway's login route, so the Authorize button of /docs signs in there.
bearer_scheme = OAuth2PasswordBearer(tokenUrl="/auth/login", auto_error=False)


def unauthorized(detail: str, *, invalid_token: bool = False) -> HTTPException:
    challenge = 'Bearer error="invalid_token"' if invalid_token else "Bearer"
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": challenge})


async def get_principal(
    state: ServiceStateDep, token: Annotated[str | None, Depends(bearer_scheme)]
) -> Principal:
    """The verified caller, or 401 (bad token) / 503 (signing keys unreachable)."""
    if not token:
        raise unauthorized("Not authenticated")
    try:
        return await state.verifier.verify(token)
    except InvalidTokenError:
        raise unauthorized("Invalid or expired token", invalid_token=True) from None
    except SigningKeysUnavailableError:
        raise HTTPException(
            status_code=503,
            detail="Token signing keys are unavailable, retry shortly",
            headers={"Retry-After": "5"},
        ) from None


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
