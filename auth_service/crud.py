"""Database operations of the auth service. Each function commits what it changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from auth_service.models import RefreshToken, User
from auth_service.security import IssuedRefreshToken, hash_token
from shared.db import utcnow


class EmailTakenError(Exception):
    """Another account already uses this email."""


class RefreshTokenRejectedError(Exception):
    """The refresh token is unknown, expired or revoked."""


class RefreshTokenReusedError(RefreshTokenRejectedError):
    """A rotated refresh token came back: its family has been revoked."""


async def get_user(session: AsyncSession, *, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_email(session: AsyncSession, *, email: str) -> User | None:
    result = await session.exec(select(User).where(col(User.email) == email))
    return result.first()


async def create_user(
    session: AsyncSession, *, email: str, name: str | None, hashed_password: str
) -> User:
    user = User(email=email, name=name, hashed_password=hashed_password)
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise EmailTakenError(email) from None
    return user


async def replace_password_hash(session: AsyncSession, *, user: User, hashed_password: str) -> None:
    user.hashed_password = hashed_password
    user.updated_at = utcnow()
    session.add(user)
    await session.commit()


async def store_refresh_token(
    session: AsyncSession, *, user_id: str, issued: IssuedRefreshToken
) -> None:
    """Keep the new token's hash, and drop this user's expired ones while at it."""
    await session.exec(
        delete(RefreshToken).where(
            col(RefreshToken.user_id) == user_id, col(RefreshToken.expires_at) < utcnow()
        )
    )
    session.add(
        RefreshToken(
            id=issued.token_id,
            user_id=user_id,
            family_id=issued.family_id,
            token_hash=hash_token(issued.token),
            issued_at=issued.issued_at,
            expires_at=issued.expires_at,
        )
    )
    await session.commit()


async def consume_refresh_token(session: AsyncSession, *, token: str) -> RefreshToken:
    """Mark a refresh token used, exactly once (RFC 9700 rotation with reuse detection).

    Returns the consumed row. A token that was already used revokes its whole family and
    raises RefreshTokenReusedError; so does losing a race to use the same token twice.
    The caller stores the successor token, which commits this change with it.
    """
    now = utcnow()
    result = await session.exec(
        select(RefreshToken).where(col(RefreshToken.token_hash) == hash_token(token))
    )
    stored = result.first()
    if stored is None or stored.revoked_at is not None or stored.expires_at <= now:
        raise RefreshTokenRejectedError
    claimed = cast(
        CursorResult[Any],
        await session.exec(
            update(RefreshToken)
            .where(
                col(RefreshToken.id) == stored.id,
                col(RefreshToken.used_at).is_(None),
                col(RefreshToken.revoked_at).is_(None),
            )
            .values(used_at=now)
        ),
    )
    if claimed.rowcount != 1:
        await revoke_family(session, family_id=stored.family_id, now=now)
        raise RefreshTokenReusedError
    return stored


async def revoke_family(
    session: AsyncSession, *, family_id: str, now: datetime | None = None
) -> None:
    await session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now or utcnow())
    )
    await session.commit()
