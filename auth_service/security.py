"""Password hashing and token minting for the auth service."""

from __future__ import annotations

import functools
import hashlib
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
from passlib.context import CryptContext
from passlib.exc import UnknownHashError

from shared import hs256
from shared.tokens import ACCESS_TOKEN_TYPE, InvalidTokenError

REFRESH_TOKEN_TYPE = "refresh"  # noqa: S105 (a token kind, not a secret)

# Argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane). bcrypt hashes from
# an earlier system still verify and are replaced with argon2 at the next login.
# passlib (the maintained libpass fork) rather than pwdlib: both hash with argon2-cffi and
# bcrypt and offer verify-and-update, so a switch would change nothing measurable, and
# passlib is the library this project's design names.
ARGON2_PARAMETERS = {"memory_cost": 19_456, "time_cost": 2, "parallelism": 1}
password_context = CryptContext(
    schemes=["argon2", "bcrypt"],
    deprecated=["bcrypt"],
    **{f"argon2__{name}": value for name, value in ARGON2_PARAMETERS.items()},
)
_BCRYPT_MAX_BYTES = 72

# Hashing is CPU- and memory-bound and runs in threads: bound how many run at once so a
# burst of logins queues instead of exhausting memory or starving the event loop.
_hashing_slots = anyio.CapacityLimiter(max(2, os.cpu_count() or 2))


@functools.cache
def _dummy_hash() -> str:
    return str(password_context.hash(uuid.uuid4().hex))


def _hash(password: str) -> str:
    return str(password_context.hash(password))


def _verify(password: str, hashed: str | None) -> tuple[bool, str | None]:
    # Unknown users are checked against a dummy hash, so both failures take the same time.
    target = hashed or _dummy_hash()
    try:
        scheme = password_context.identify(target)
        secret: str | bytes = password
        if scheme == "bcrypt":
            # bcrypt always ignored bytes past 72; bcrypt 5 raises instead.
            secret = password.encode()[:_BCRYPT_MAX_BYTES]
        matches = bool(password_context.verify(secret, target))
    except (UnknownHashError, ValueError, TypeError):
        return False, None
    if not matches or hashed is None:
        return False, None
    return True, _hash(password) if password_context.needs_update(target) else None


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hash, password, limiter=_hashing_slots)


async def verify_password(password: str, hashed: str | None) -> tuple[bool, str | None]:
    """Whether the password matches, and a replacement hash when the stored one is outdated."""
    return await anyio.to_thread.run_sync(_verify, password, hashed, limiter=_hashing_slots)


def hash_token(token: str) -> str:
    """What the database keeps of a refresh token: its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_access_token(
    *,
    user_id: str,
    session_id: str,
    email: str,
    name: str | None,
    key: str,
    lifetime_seconds: int,
) -> str:
    """An access token; `sid` names its sign-in (the refresh token family), so the token
    alone can end that sign-in at logout."""
    now = int(time.time())
    claims = {
        "sub": user_id,
        "sid": session_id,
        "email": email,
        "name": name,
        "iat": now,
        "exp": now + lifetime_seconds,
        "jti": uuid.uuid4().hex,
        "type": ACCESS_TOKEN_TYPE,
    }
    return hs256.encode(claims, key)


@dataclass(frozen=True)
class IssuedRefreshToken:
    token: str
    token_id: str
    family_id: str
    issued_at: datetime
    expires_at: datetime


def create_refresh_token(
    *, user_id: str, family_id: str, key: str, lifetime_seconds: int
) -> IssuedRefreshToken:
    now = int(time.time())
    token_id = str(uuid.uuid4())
    claims = {
        "sub": user_id,
        "iat": now,
        "exp": now + lifetime_seconds,
        "jti": token_id,
        "fam": family_id,
        "type": REFRESH_TOKEN_TYPE,
    }
    return IssuedRefreshToken(
        token=hs256.encode(claims, key),
        token_id=token_id,
        family_id=family_id,
        issued_at=datetime.fromtimestamp(now, UTC),
        expires_at=datetime.fromtimestamp(now + lifetime_seconds, UTC),
    )


def decode_refresh_token(token: str, *, key: str, verify_exp: bool = True) -> Mapping[str, Any]:
    """The claims of one of our refresh tokens; InvalidTokenError for anything else."""
    try:
        claims = hs256.decode(
            token, key, require=("exp", "sub", "jti", "fam"), verify_exp=verify_exp
        )
    except hs256.TokenError:
        raise InvalidTokenError("invalid refresh token") from None
    if claims.get("type") != REFRESH_TOKEN_TYPE:
        raise InvalidTokenError("not a refresh token")
    return claims
