"""Bearer-token verification: the one verifier both services use.

Accepted, and nothing else:
- HS256 tokens signed with SECRET_KEY (our auth service) or BETTER_AUTH_SECRET (tokens the
  Next.js frontend mints itself);
- when a JWKS URL is configured, tokens from Better Auth's JWT plugin (EdDSA by default),
  checked against the keys it publishes.

Every token names its user in `sub`. Only the frontend's tokens (BETTER_AUTH_SECRET, JWKS)
may leave `sub` out and name the user in `id` or `userId` instead, as some frontends do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
import jwt

logger = logging.getLogger(__name__)

ACCESS_TOKEN_TYPE = "access"  # noqa: S105 (a token kind, not a secret)
MAX_TOKEN_BYTES = 8 * 1024
MAX_SUBJECT_LENGTH = 255
DEFAULT_LEEWAY_SECONDS = 30
# Algorithms Better Auth's JWT plugin can sign with; each needs a matching published key.
JWKS_ALGORITHMS = frozenset({"EdDSA", "ES256", "ES512", "RS256", "PS256"})
_ACCEPTED_TYP = frozenset({"JWT", "AT+JWT"})


class InvalidTokenError(Exception):
    """The token is not one this service accepts (answer 401)."""


class SigningKeysUnavailableError(Exception):
    """The keys needed to check a token could not be fetched (answer 503)."""


@dataclass(frozen=True)
class Principal:
    """Whoever a verified token speaks for."""

    user_id: str
    claims: Mapping[str, Any]


class JWKSCache:
    """Public keys from a JWKS URL: cached, refreshed when stale or on an unknown key id.

    Fetch attempts are spaced at least `min_refresh_interval` apart, so neither tokens with
    made-up key ids nor a JWKS endpoint that is down can turn into one fetch per request.
    Stale keys keep serving while the endpoint is down. A key id it does not know is an
    outage while the last fetch failed (the key may have been published since), and an
    invalid token only when the last fetch succeeded.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 300.0,
        min_refresh_interval: float = 10.0,
        timeout: float = 5.0,
        client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self._client = client or httpx2.AsyncClient(timeout=timeout, follow_redirects=False)
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")
        self._next_attempt = -float("inf")
        self._last_fetch_failed = False
        self._lock = asyncio.Lock()

    async def get_key(self, kid: str | None) -> jwt.PyJWK:
        if time.monotonic() - self._fetched_at > self.ttl:
            await self._refresh()
        key = self._lookup(kid)
        if key is None:
            await self._refresh()  # the key may have been rotated in since the last fetch
            key = self._lookup(kid)
        if key is None:
            if not self._keys or self._last_fetch_failed:
                raise SigningKeysUnavailableError("the signing keys could not be fetched")
            raise InvalidTokenError("unknown signing key")
        return key

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if now < self._next_attempt:
                return  # fetched (or tried) moments ago, possibly while this call waited
            self._next_attempt = now + self.min_refresh_interval
            try:
                response = await self._client.get(self.url)
                response.raise_for_status()
                key_set = jwt.PyJWKSet.from_dict(response.json())
            except (httpx2.HTTPError, ValueError, jwt.PyJWTError) as exc:
                logger.warning("Could not fetch signing keys from the JWKS URL: %s", exc)
                self._last_fetch_failed = True
                return
            self._keys = {key.key_id: key for key in key_set.keys}
            self._fetched_at = now
            self._last_fetch_failed = False

    async def aclose(self) -> None:
        await self._client.aclose()


class TokenVerifier:
    """Checks a bearer token and names the user it speaks for."""

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        frontend_secret: str | None = None,
        jwks: JWKSCache | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = DEFAULT_LEEWAY_SECONDS,
    ) -> None:
        """`secrets` sign tokens that must carry `sub` (our auth service's SECRET_KEY).

        `frontend_secret` (BETTER_AUTH_SECRET) is accepted too, and its tokens may name the
        user in `id` or `userId` instead. When it is one of `secrets`, nothing tells whose a
        token signed with it is, so those tokens may as well.
        """
        if not secrets:
            raise ValueError("at least one HS256 secret is required")
        extra = [frontend_secret] if frontend_secret else []
        self.secrets = list(dict.fromkeys([*secrets, *extra]))
        self.frontend_secret = frontend_secret or None
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway

    async def verify(self, token: str) -> Principal:
        """Return the principal, or raise InvalidTokenError / SigningKeysUnavailableError."""
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidTokenError("token too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidTokenError("malformed token") from None
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() not in _ACCEPTED_TYP):
            raise InvalidTokenError("not a JWT access token")

        algorithm = header.get("alg")
        if algorithm == "HS256":
            claims, from_frontend = self._decode_hs256(token)
        elif self.jwks is not None and algorithm in JWKS_ALGORITHMS:
            from_frontend = True
            kid = header.get("kid")
            key = await self.jwks.get_key(kid if isinstance(kid, str) else None)
            try:
                claims = self._decode(token, key, str(algorithm), check_issuer=True)
            except jwt.InvalidSignatureError:
                # _decode lets this through for the HS256 loop; here there is no other key.
                raise InvalidTokenError("bad signature") from None
        else:
            raise InvalidTokenError("unsupported signing algorithm")
        return Principal(user_id=_subject(claims, from_frontend=from_frontend), claims=claims)

    async def aclose(self) -> None:
        if self.jwks is not None:
            await self.jwks.aclose()

    def _decode_hs256(self, token: str) -> tuple[dict[str, Any], bool]:
        """The claims, and whether the frontend's secret signed them."""
        for secret in self.secrets:
            try:
                claims = self._decode(token, secret, "HS256", check_issuer=False)
            except jwt.InvalidSignatureError:
                continue
            return claims, secret == self.frontend_secret
        raise InvalidTokenError("bad signature")

    def _decode(
        self, token: str, key: str | jwt.PyJWK, algorithm: str, *, check_issuer: bool
    ) -> dict[str, Any]:
        audience = self.audience if check_issuer else None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=audience,
                issuer=self.issuer if check_issuer else None,
                leeway=self.leeway,
                options={"require": ["exp"], "verify_aud": audience is not None},
            )
        except jwt.InvalidSignatureError:
            raise
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(str(exc)) from None
        token_type = claims.get("type")
        if token_type is not None and token_type != ACCESS_TOKEN_TYPE:
            raise InvalidTokenError("not an access token")
        return claims


def _subject(claims: Mapping[str, Any], *, from_frontend: bool) -> str:
    """The user id: `sub`; in a frontend's token without `sub`, `id` or else `userId`.

    The first of these claims present is the one used: an empty or malformed `sub` is
    refused, never replaced by another claim.
    """
    names = ("sub", "id", "userId") if from_frontend else ("sub",)
    name = next((name for name in names if name in claims), None)
    if name is None:
        raise InvalidTokenError("token names no subject")
    value = claims[name]
    # Frontends may hold numeric user ids; PyJWT already refuses a `sub` that is no string.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidTokenError("subject is not a non-empty string")
    if len(value) > MAX_SUBJECT_LENGTH:
        raise InvalidTokenError("subject too long")
    if not value.isprintable():
        raise InvalidTokenError("subject has control characters")
    return value
