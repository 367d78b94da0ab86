"""The auth service's state and the dependencies of its routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from auth_service import crud
from auth_service.models import User
from auth_service.rate_limit import (
    AuthRateLimiter,
    RateLimitedError,
    client_address,
    too_many_requests,
)
from auth_service.schemas import CurrentUserPublic
from auth_service.settings import AuthSettings
from shared.app import state_of
from shared.auth import CurrentPrincipal, unauthorized
from shared.deps import ServiceState, SessionDep
from shared.tokens import Principal


@dataclass(frozen=True, kw_only=True)
class AuthState(ServiceState[AuthSettings]):
    """The auth service's shared objects: the common ones and the rate limiter."""

    rate_limiter: AuthRateLimiter

    async def aclose(self) -> None:
        try:
            await self.rate_limiter.aclose()
        finally:
            await super().aclose()


async def get_state(request: Request) -> AuthState:
    return state_of(request.app, AuthState)


StateDep = Annotated[AuthState, Depends(get_state)]


async def get_settings(state: StateDep) -> AuthSettings:
    return state.settings


SettingsDep = Annotated[AuthSettings, Depends(get_settings)]


async def get_rate_limiter(state: StateDep) -> AuthRateLimiter:
    return state.rate_limiter


RateLimiterDep = Annotated[AuthRateLimiter, Depends(get_rate_limiter)]


async def limit_per_client(request: Request, limiter: RateLimiterDep) -> None:
    """Dependency: 429 with Retry-After once a client is over AUTH_RATE_LIMIT."""
    try:
        await limiter.hit_client(client_address(request))
    except RateLimitedError as exc:
        raise too_many_requests(exc.retry_after) from None


async def get_current_user(principal: CurrentPrincipal, session: SessionDep) -> User:
    """The account the access token names; 401 when it no longer exists."""
    user = await crud.get_user(session, user_id=principal.user_id)
    if user is None:
        raise unauthorized("Unknown user", invalid_token=True)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def _claim_text(principal: Principal, name: str) -> str | None:
    value = principal.claims.get(name)
    return value if isinstance(value, str) and value.strip() else None


async def get_current_identity(
    principal: CurrentPrincipal, session: SessionDep
) -> CurrentUserPublic:
    """The token's user: their account; else, for a frontend's token, what its claims say.

    A user of the frontend (Better Auth, or a token it signs itself) may have no account
    here, yet the task routes accept their token: so does `/api/users/me`. A token of this
    service whose account is gone is still a 401.
    """
    user = await crud.get_user(session, user_id=principal.user_id)
    if user is not None:
        return CurrentUserPublic(
            id=user.id,
            email=user.email,
            name=user.name,
            created_at=user.created_at,
            identity_source="account",
        )
    if not principal.source.is_frontend:
        raise unauthorized("Unknown user", invalid_token=True)
    return CurrentUserPublic(
        id=principal.user_id,
        email=_claim_text(principal, "email"),
        name=_claim_text(principal, "name"),
        created_at=None,
        identity_source="token",
    )


CurrentIdentity = Annotated[CurrentUserPublic, Depends(get_current_identity)]
