"""Every endpoint of the auth service.

`/auth` routes are declared on `auth_router`; those that check a password or mint tokens hang
off `throttled`, which carries the per-client rate limit once for all of them.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Form, Request, Response, status

from auth_service import crud
from auth_service.deps import (
    CurrentIdentity,
    CurrentUser,
    RateLimiterDep,
    SettingsDep,
    limit_per_client,
)
from auth_service.models import RefreshToken, User, new_id
from auth_service.rate_limit import RateLimitedError, client_address, too_many_requests
from auth_service.schemas import (
    CurrentUserPublic,
    LoginRequest,
    LogoutRequest,
    PasswordChangeRequest,
    PasswordGrantForm,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
    UserPublic,
)
from auth_service.security import (
    create_access_token,
    create_refresh_token,
    decode_refresh_token,
    hash_password,
    verify_password,
)
from auth_service.settings import AuthSettings
from shared.auth import CurrentPrincipal, bearer_scheme, unauthorized, verify_bearer
from shared.deps import ServiceStateDep, SessionDep
from shared.errors import ApiError, ErrorCode, error_responses
from shared.metrics import LOGIN_FAILURES
from shared.tokens import InvalidTokenError, Principal

logger = logging.getLogger(__name__)

auth_router = APIRouter(prefix="/auth", tags=["auth"])
throttled = APIRouter(dependencies=[Depends(limit_per_client)])
users_router = APIRouter(prefix="/api/users", tags=["users"])

_SIGN_IN_ERRORS = error_responses(400, ErrorCode.INVALID_CREDENTIALS, 422, 429, 503)


async def _issue_tokens(
    session: SessionDep,
    settings: AuthSettings,
    user: User,
    *,
    rotated: RefreshToken | None = None,
) -> TokenResponse:
    """A fresh access token and a refresh token: of a new sign-in, or the successor of the
    `rotated` one in its sign-in."""
    family_id = rotated.family_id if rotated else new_id()
    refresh = create_refresh_token(
        user_id=user.id,
        family_id=family_id,
        key=settings.signing_key,
        lifetime_seconds=settings.refresh_token_expire_days * 86_400,
    )
    await crud.store_refresh_token(
        session, user_id=user.id, issued=refresh, parent_id=rotated.id if rotated else None
    )
    lifetime = settings.access_token_expire_minutes * 60
    return TokenResponse(
        access_token=create_access_token(
            user_id=user.id,
            session_id=family_id,
            email=user.email,
            name=user.name,
            key=settings.signing_key,
            lifetime_seconds=lifetime,
        ),
        refresh_token=refresh.token,
        expires_in=lifetime,
        user=UserPublic.model_validate(user, from_attributes=True),
    )


@throttled.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenResponse,
    responses=error_responses(400, ErrorCode.EMAIL_TAKEN, 429, 503),
)
async def register(
    body: RegisterRequest, session: SessionDep, settings: SettingsDep
) -> TokenResponse:
    """Create an account and sign it in."""
    hashed = await hash_password(body.password)
    try:
        user = await crud.create_user(
            session, email=body.email, name=body.name, hashed_password=hashed
        )
    except crud.EmailTakenError:
        raise ApiError(ErrorCode.EMAIL_TAKEN, "An account with this email already exists") from None
    logger.info("Registered user %s", user.id)
    return await _issue_tokens(session, settings, user)


async def _sign_in(
    request: Request,
    session: SessionDep,
    settings: AuthSettings,
    limiter: RateLimiterDep,
    *,
    email: str,
    password: str,
) -> TokenResponse:
    """The one sign-in behind both login routes.

    After LOGIN_FAILURE_LIMIT failures for one account from one client, further attempts
    from that client are refused with 429 until the window passes.
    """
    client = client_address(request)
    try:
        await limiter.hit_login(email, client)
    except RateLimitedError as exc:
        raise too_many_requests(exc.retry_after) from None
    user = await crud.get_user_by_email(session, email=email)
    # End the read before hashing: the hash takes tens of milliseconds, and a pooled
    # connection held meanwhile (SQLite's only one) would stall every other request.
    await session.commit()
    matches, new_hash = await verify_password(password, user.hashed_password if user else None)
    if user is None or not matches:
        LOGIN_FAILURES.inc()
        raise unauthorized("Incorrect email or password", code=ErrorCode.INVALID_CREDENTIALS)
    await limiter.clear_failures(email, client)
    if new_hash is not None:
        await crud.replace_password_hash(session, user=user, hashed_password=new_hash)
    return await _issue_tokens(session, settings, user)


@throttled.post("/login", response_model=TokenResponse, responses=_SIGN_IN_ERRORS)
async def login(
    body: LoginRequest,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    limiter: RateLimiterDep,
) -> TokenResponse:
    """Sign in with a JSON `{email, password}`: what an application's own sign-in form sends."""
    return await _sign_in(
        request, session, settings, limiter, email=body.email, password=body.password
    )


@throttled.post("/token", response_model=TokenResponse, responses=_SIGN_IN_ERRORS)
async def token(
    form: Annotated[PasswordGrantForm, Form()],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    limiter: RateLimiterDep,
) -> TokenResponse:
    """OAuth2 token endpoint, password grant (RFC 6749 section 4.3): the form the /docs
    Authorize button and OAuth2 tools post, with the email as `username`.

    Same checks, throttling and answers as `/auth/login`.
    """
    return await _sign_in(
        request, session, settings, limiter, email=form.username, password=form.password
    )


@throttled.post(
    "/refresh",
    response_model=TokenResponse,
    responses=error_responses(
        400, ErrorCode.INVALID_REFRESH_TOKEN, ErrorCode.REFRESH_TOKEN_REUSED, 429, 503
    ),
)
async def refresh(
    body: RefreshRequest, session: SessionDep, settings: SettingsDep
) -> TokenResponse:
    """Trade a refresh token for a new pair. Each refresh token works once, except that
    the one just rotated still gets a pair of its sign-in for REFRESH_REUSE_GRACE_SECONDS
    (two tabs refreshing at once, a retry whose answer was lost)."""
    try:
        decode_refresh_token(body.refresh_token, key=settings.signing_key)
        consumed = await crud.consume_refresh_token(
            session,
            token=body.refresh_token,
            grace_seconds=settings.refresh_reuse_grace_seconds,
        )
    except crud.RefreshTokenReusedError:
        logger.warning("Refresh token reused: its token family was revoked")
        raise unauthorized(
            "Refresh token reuse detected; sign in again", code=ErrorCode.REFRESH_TOKEN_REUSED
        ) from None
    except (InvalidTokenError, crud.RefreshTokenRejectedError):
        raise unauthorized(
            "Invalid or expired refresh token", code=ErrorCode.INVALID_REFRESH_TOKEN
        ) from None
    user = await crud.get_user(session, user_id=consumed.user_id)
    if user is None:
        raise unauthorized("Unknown user", code=ErrorCode.INVALID_REFRESH_TOKEN)
    return await _issue_tokens(session, settings, user, rotated=consumed)


async def _bearer_if_sent(
    state: ServiceStateDep, token: Annotated[str | None, Depends(bearer_scheme)]
) -> Principal | ApiError | None:
    """The bearer token's caller, or why it was refused, or None without one.

    Logout does not need a bearer token when it is given a refresh token, and a frontend
    signing out often still sends its expired access token.
    """
    if not token:
        return None
    try:
        return await verify_bearer(state.verifier, token)
    except ApiError as refused:
        return refused


@auth_router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(
        400, 401, ErrorCode.INVALID_TOKEN, ErrorCode.INVALID_REFRESH_TOKEN, 422, 503
    ),
)
async def logout(
    session: SessionDep,
    settings: SettingsDep,
    bearer: Annotated[Principal | ApiError | None, Depends(_bearer_if_sent)],
    body: Annotated[LogoutRequest | None, Body()] = None,
) -> Response:
    """End a sign-in: its refresh token, and every token rotated from it, stop working.

    The sign-in is the refresh token's when one is sent, else the bearer token's (access
    tokens name theirs in `sid`); `everywhere` ends every sign-in of the user. Access tokens
    already issued stay valid until they expire (ACCESS_TOKEN_EXPIRE_MINUTES).
    """
    body = body or LogoutRequest()
    family_id: object
    if body.refresh_token is not None:
        try:
            claims = decode_refresh_token(
                body.refresh_token, key=settings.signing_key, verify_exp=False
            )
        except InvalidTokenError:
            raise unauthorized(
                "Invalid refresh token", code=ErrorCode.INVALID_REFRESH_TOKEN
            ) from None
        user_id, family_id = str(claims["sub"]), claims["fam"]
    elif isinstance(bearer, Principal):
        user_id, family_id = bearer.user_id, bearer.claims.get("sid")
    elif isinstance(bearer, ApiError):
        raise bearer
    else:
        raise unauthorized("Send a bearer token or a refresh token")
    if body.everywhere:
        await crud.revoke_other_families(session, user_id=user_id)
    elif isinstance(family_id, str):
        await crud.revoke_family(session, user_id=user_id, family_id=family_id)
    else:
        # Tokens signed elsewhere (a frontend, Better Auth) have no sign-in here to end.
        raise unauthorized("This token names no sign-in of this service", invalid_token=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@throttled.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(
        400, 401, ErrorCode.INVALID_TOKEN, ErrorCode.INVALID_CREDENTIALS, 422, 429, 503
    ),
)
async def change_password(
    body: PasswordChangeRequest,
    request: Request,
    *,
    principal: CurrentPrincipal,
    user: CurrentUser,
    session: SessionDep,
    limiter: RateLimiterDep,
) -> Response:
    """Change the password and end every other sign-in of the user.

    A wrong current password is a 401 that counts towards LOGIN_FAILURE_LIMIT, like a
    failed login: a stolen access token must not become a way to guess the password.
    """
    client = client_address(request)
    try:
        await limiter.hit_login(user.email, client)
    except RateLimitedError as exc:
        raise too_many_requests(exc.retry_after) from None
    # As at login: no pooled connection held while hashing.
    await session.commit()
    matches, _ = await verify_password(body.current_password, user.hashed_password)
    if not matches:
        raise unauthorized("Incorrect current password", code=ErrorCode.INVALID_CREDENTIALS)
    await limiter.clear_failures(user.email, client)
    hashed = await hash_password(body.new_password)
    await crud.replace_password_hash(session, user=user, hashed_password=hashed)
    sign_in = principal.claims.get("sid")
    await crud.revoke_other_families(
        session, user_id=user.id, keep_family_id=sign_in if isinstance(sign_in, str) else None
    )
    logger.info("User %s changed their password; other sign-ins ended", user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@users_router.get(
    "/me",
    response_model=CurrentUserPublic,
    responses=error_responses(401, ErrorCode.INVALID_TOKEN, ErrorCode.TOKEN_EXPIRED, 503),
)
async def read_me(identity: CurrentIdentity) -> CurrentUserPublic:
    """The signed-in user, with the tokens the task routes accept.

    `identity_source` says whether this is an account here or a frontend user known only
    from their token (whose `email` and `name` are then the token's, when it has them).
    """
    return identity


auth_router.include_router(throttled)
# What the app factory mounts: every route of the service.
router = APIRouter()
router.include_router(auth_router)
router.include_router(users_router)
