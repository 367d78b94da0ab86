"""Tables of the auth service. They live in its own schema (`auth` by default)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import MetaData
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.db import NAMING_CONVENTION, UTCDateTime, utcnow

# The service's own metadata: the task service's tables never mix with these.
metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AuthModel(SQLModel, registry=registry(metadata=metadata)):
    """Base of every auth table."""


def new_id() -> str:
    return str(uuid.uuid4())


class User(AuthModel, table=True):
    __tablename__ = "users"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    # Stored normalized (trimmed, lower case, NFC), so uniqueness ignores case and form.
    email: str = Field(max_length=320, unique=True)
    name: str | None = Field(default=None, max_length=100)
    hashed_password: str = Field(max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RefreshToken(AuthModel, table=True):
    """One issued refresh token. Only its hash is kept.

    Tokens descended from one login share a `family_id` (the sign-in's id, `sid` in its
    access tokens); presenting a token that was already rotated revokes its whole family,
    unless it is the generation just rotated and still within the reuse grace.
    """

    __tablename__ = "refresh_tokens"

    id: str = Field(primary_key=True, max_length=36)
    user_id: str = Field(foreign_key="users.id", ondelete="CASCADE", index=True, max_length=36)
    family_id: str = Field(index=True, max_length=36)
    # The token this one was rotated from (none for a sign-in's first): a rotated token
    # presented again is forgiven only while none of its successors has been used.
    parent_id: str | None = Field(default=None, index=True, max_length=36)
    token_hash: str = Field(unique=True, max_length=64)
    issued_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
