"""Every endpoint of the auth service."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from auth_service import crud
from auth_service.deps import CurrentUser, SettingsDep
from auth_service.models import User, new_id
from auth_service.rate_limit import (
    RateLimitedError,
    RateLimiterDep,
    client_address,
    limit_per_client,
    too_many_requests,
)
from auth_service.schemas import (
    LOGIN_REQUEST_BODY,
    LoginRequest,
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
from shared.auth import unauthorized
from shared.db import SessionDep
from shared.errors import ApiError, ErrorCode, error_responses
from shared.tokens import InvalidTokenError

logger = logging.getLogger(__name__)

router = APIRouter()

_FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}


async def _issue_tokens(
    session: SessionDep, settings: AuthSettings, user: User, *, family_id: str | None = None
) -> TokenResponse:
    """A fresh access token and a refresh token (of a new family unless one is given)."""
    refresh = create_refresh_token(
        user_id=user.id,
        family_id=family_id or new_id(),
        key=settings.signing_key,
        lifetime_seconds=settings.refresh_token_expire_days * 86_400,
    )
    await crud.store_refresh_token(session, user_id=user.id, issued=refresh)
    lifetime = settings.access_token_expire_minutes * 60
    return TokenResponse(
        access_token=create_access_token(
            user_id=user.id,
            email=user.email,
            name=user.name,
            key=settings.signing_key,
            lifetime_seconds=lifetime,
        ),
        refresh_token=refresh.token,
        expires_in=lifetime,
        user=UserPublic.model_validate(user, from_attributes=True),
    )


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenResponse,
    responses=error_responses(
        ErrorCode.BAD_REQUEST,
        ErrorCode.EMAIL_TAKEN,
        ErrorCode.RATE_LIMITED,
        ErrorCode.SERVICE_UNAVAILABLE,
    ),
    dependencies=[Depends(limit_per_client)],
    tags=["auth"],
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


async def _read_credentials(request: Request) -> LoginRequest:
    """JSON `{email, password}`, or an OAuth2 password form (`username`, `password`)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: Any
    if content_type in _FORM_TYPES:
        async with request.form() as form:
            data = {"email": form.get("username"), "password": form.get("password")}
        # A file part would be echoed in the 422 with the internals of its upload object.
        uploads = [name for name, value in data.items() if not isinstance(value, str | None)]
        if uploads:
            raise RequestValidationError(
                [
                    {
                        "type": "string_type",
                        "loc": ("body", name),
                        "msg": "Input should be a valid string",
                    }
                    for name in uploads
                ]
            )
    elif content_type == "application/json" or content_type.endswith("+json"):
        try:
            data = await request.json()
        except json.JSONDecodeError:
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error"}]
            ) from None
        except (ValueError, RecursionError):
            # Not UTF-8, or nested too deeply to parse: what FastAPI answers on other routes.
            raise ApiError(ErrorCode.BAD_REQUEST, "There was an error parsing the body") from None
    else:
        raise RequestValidationError(
            [
                {
                    "type": "content_type",
                    "loc": ("body",),
                    "msg": "Send JSON (application/json) or an OAuth2 password form",
                }
            ]
        )
    try:
        return LoginRequest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None


@router.post(
    "/auth/login",
    response_model=TokenResponse,
    responses=error_responses(
        ErrorCode.BAD_REQUEST,
        ErrorCode.INVALID_CREDENTIALS,
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.RATE_LIMITED,
        ErrorCode.SERVICE_UNAVAILABLE,
    ),
    openapi_extra={"requestBody": LOGIN_REQUEST_BODY},
    dependencies=[Depends(limit_per_client)],
    tags=["auth"],
)
async def login(
    request: Request, session: SessionDep, settings: SettingsDep, limiter: RateLimiterDep
) -> TokenResponse:
    """Sign in with email and password (JSON, or the form the /docs Authorize button sends).

    After LOGIN_FAILURE_LIMIT failures for one account from one client, further attempts
    from that client are refused with 429 until the window passes.
    """
    credentials = await _read_credentials(request)
    client = client_address(request)
    try:
        await limiter.hit_login(credentials.email, client)
    except RateLimitedError as exc:
        raise too_many_requests(exc.retry_after) from None
    user = await crud.get_user_by_email(session, email=credentials.email)
    # End the read before hashing: the hash takes tens of milliseconds, and a pooled
    # connection held meanwhile (SQLite's only one) would stall every other request.
    await session.commit()
    matches, new_hash = await verify_password(
        credentials.password, user.hashed_password if user else None
    )
    if user is None or not matches:
        raise unauthorized("Incorrect email or password", code=ErrorCode.INVALID_CREDENTIALS)
    await limiter.clear_failures(credentials.email, client)
    if new_hash is not None:
        await crud.replace_password_hash(session, user=user, hashed_password=new_hash)
    return await _issue_tokens(session, settings, user)


@router.post(
    "/auth/refresh",
    response_model=TokenResponse,
    responses=error_responses(
        ErrorCode.BAD_REQUEST,
        ErrorCode.INVALID_REFRESH_TOKEN,
        ErrorCode.REFRESH_TOKEN_REUSED,
        ErrorCode.RATE_LIMITED,
        ErrorCode.SERVICE_UNAVAILABLE,
    ),
    dependencies=[Depends(limit_per_client)],
    tags=["auth"],
)
async def refresh(
    body: RefreshRequest, session: SessionDep, settings: SettingsDep
) -> TokenResponse:
    """Trade a refresh token for a new pair. Each refresh token works once."""
    try:
        decode_refresh_token(body.refresh_token, key=settings.signing_key)
        consumed = await crud.consume_refresh_token(session, token=body.refresh_token)
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
    return await _issue_tokens(session, settings, user, family_id=consumed.family_id)


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(
        ErrorCode.BAD_REQUEST, ErrorCode.INVALID_REFRESH_TOKEN, ErrorCode.SERVICE_UNAVAILABLE
    ),
    tags=["auth"],
)
async def logout(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> Response:
    """End the session: the refresh token, and every token rotated from it, stop working."""
    try:
        claims = decode_refresh_token(
            body.refresh_token, key=settings.signing_key, verify_exp=False
        )
    except InvalidTokenError:
        raise unauthorized("Invalid refresh token", code=ErrorCode.INVALID_REFRESH_TOKEN) from None
    await crud.revoke_family(session, family_id=str(claims["fam"]))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/api/users/me",
    response_model=UserPublic,
    responses=error_responses(
        ErrorCode.NOT_AUTHENTICATED, ErrorCode.INVALID_TOKEN, ErrorCode.SERVICE_UNAVAILABLE
    ),
    tags=["users"],
)
async def read_me(user: CurrentUser) -> UserPublic:
    """The signed-in account."""
    return UserPublic.model_validate(user, from_attributes=True)
