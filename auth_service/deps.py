"""Dependencies of the auth routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from auth_service import crud
from auth_service.models import User
from auth_service.settings import AuthSettings
from shared.auth import CurrentPrincipal, unauthorized
from shared.db import SessionDep


async def get_settings(request: Request) -> AuthSettings:
    settings: AuthSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[AuthSettings, Depends(get_settings)]


async def get_current_user(principal: CurrentPrincipal, session: SessionDep) -> User:
    """The account the access token names; 401 when it no longer exists."""
    user = await crud.get_user(session, user_id=principal.user_id)
    if user is None:
        raise unauthorized("Unknown user", invalid_token=True)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
