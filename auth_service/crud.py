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
    session: AsyncSession,
    *,
    user_id: str,
    issued: IssuedRefreshToken,
    parent_id: str | None = None,
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
            parent_id=parent_id,
            token_hash=hash_token(issued.token),
            issued_at=issued.issued_at,
            expires_at=issued.expires_at,
        )
    )
    await session.commit()


async def consume_refresh_token(
    session: AsyncSession, *, token: str, grace_seconds: float = 0
) -> RefreshToken:
    """Mark a refresh token used, exactly once (RFC 9700 rotation with reuse detection).

    Returns the consumed row. A token that was already used revokes its whole family and
    raises RefreshTokenReusedError, except while it is the generation just rotated (none of
    its successors used yet) and was rotated at most `grace_seconds` ago: then it is
    returned again, so two tabs refreshing at once, or a retry whose answer was lost, both
    get a pair. Successors of successors are what ends the grace: a token two generations
    old always revokes. The caller stores the successor token, which commits this change.
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
    if claimed.rowcount == 1:
        return stored
    if await _within_reuse_grace(session, stored.id, now=now, grace_seconds=grace_seconds):
        return stored
    await revoke_family(session, user_id=stored.user_id, family_id=stored.family_id, now=now)
    raise RefreshTokenReusedError


async def _within_reuse_grace(
    session: AsyncSession, token_id: str, *, now: datetime, grace_seconds: float
) -> bool:
    """Whether a used token is still the family's just-rotated generation, in its window.

    Read afresh: the use that beat this one may have committed after the first read.
    """
    if grace_seconds <= 0:
        return False
    row = (
        await session.exec(
            select(RefreshToken.used_at, RefreshToken.revoked_at).where(
                col(RefreshToken.id) == token_id
            )
        )
    ).first()
    if row is None or row[0] is None or row[1] is not None:
        return False
    if (now - row[0]).total_seconds() > grace_seconds:
        return False
    successor_used = (
        await session.exec(
            select(RefreshToken.id)
            .where(col(RefreshToken.parent_id) == token_id, col(RefreshToken.used_at).is_not(None))
            .limit(1)
        )
    ).first()
    return successor_used is None


async def revoke_family(
    session: AsyncSession, *, user_id: str, family_id: str, now: datetime | None = None
) -> None:
    """End one sign-in of a user: none of its refresh tokens works any more."""
    await session.exec(
        update(RefreshToken)
        .where(
            col(RefreshToken.user_id) == user_id,
            col(RefreshToken.family_id) == family_id,
            col(RefreshToken.revoked_at).is_(None),
        )
        .values(revoked_at=now or utcnow())
    )
    await session.commit()


async def revoke_other_families(
    session: AsyncSession, *, user_id: str, keep_family_id: str | None = None
) -> None:
    """End every sign-in of a user, but the one named by `keep_family_id` if given."""
    condition = [col(RefreshToken.user_id) == user_id, col(RefreshToken.revoked_at).is_(None)]
    if keep_family_id is not None:
        condition.append(col(RefreshToken.family_id) != keep_family_id)
    await session.exec(update(RefreshToken).where(*condition).values(revoked_at=utcnow()))
    await session.commit()
