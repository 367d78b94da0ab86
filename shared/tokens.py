"""Bearer-token verification: one verifier for both services, built by `create_verifier`.

Accepted, and nothing else:
- HS256 tokens signed with SECRET_KEY (our auth service) or BETTER_AUTH_SECRET (tokens the
  Next.js frontend mints itself);
- when BETTER_AUTH_JWKS_URL is set, tokens of Better Auth's JWT plugin (any algorithm it can
  sign with), checked against the keys it publishes, and against BETTER_AUTH_ISSUER and
  BETTER_AUTH_AUDIENCE when those are set.

Two key strategies read a token's claims: `SharedSecrets` (HS256, shared/hs256.py) and
`JWKSKeys` (PyJWT, imported only when BETTER_AUTH_JWKS_URL is set). The
verifier picks one by the token's `alg`; each returns the claims and where the token comes
from, or raises `InvalidTokenError`. The verifier then reads the subject: our auth
service's tokens name their user in `sub`; the frontend's may leave `sub` out and name the
user in `id` or `userId` instead, as some frontends do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from shared import hs256
from shared.settings import ServiceSettings

if TYPE_CHECKING:
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
# How much of a value taken from a token a log line may quote.
_SHOWN_CHARACTERS = 80

Claims = dict[str, Any]


class InvalidTokenError(Exception):
    """The token is not one this service accepts (answer 401).

    `reason` is short and one of a few fixed phrases (log lines are grouped by it);
    `detail` says what was expected and what the token had, for the log only.
    """

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason if detail is None else f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TokenExpiredError(InvalidTokenError):
    """The token was good but has expired: the client should refresh it."""


class SigningKeysUnavailableError(Exception):
    """The keys needed to check a token could not be fetched (answer 503)."""


class TokenSource(StrEnum):
    """Who signed a token, told by the key that verified it."""

    AUTH_SERVICE = "auth_service"  # SECRET_KEY
    FRONTEND_SECRET = "better_auth_secret"  # noqa: S105 (BETTER_AUTH_SECRET names no secret)
    BETTER_AUTH_JWKS = "better_auth_jwks"  # a key Better Auth's JWKS publishes

    @property
    def is_frontend(self) -> bool:
        """Whether the frontend signed it: its user may have no account with us."""
        return self is not TokenSource.AUTH_SERVICE


@dataclass(frozen=True)
class Principal:
    """Whoever a verified token speaks for."""

    user_id: str
    claims: Mapping[str, Any]
    source: TokenSource


def shown(value: object) -> str:
    """A value from a token as a log line may quote it: repr'd (no line breaks), cut short."""
    text = repr(value)
    if len(text) > _SHOWN_CHARACTERS:
        return text[:_SHOWN_CHARACTERS] + "..."
    return text


class KeyStrategy(Protocol):
    """Reads the claims of tokens signed with some algorithms, checking their signature."""

    algorithms: frozenset[str]

    async def claims(self, token: str, header: Mapping[str, Any]) -> tuple[Claims, TokenSource]:
        """The verified claims and who signed them, or InvalidTokenError."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class SigningSecret:
    """An HS256 secret and whose tokens it signs."""

    secret: str
    source: TokenSource


class SharedSecrets:
    """HS256 tokens (shared/hs256.py): the secret whose signature matches tells whose
    token it is."""

    algorithms = frozenset({hs256.ALGORITHM})

    def __init__(self, secrets: Sequence[SigningSecret], *, leeway: float) -> None:
        if not secrets:
            raise ValueError("at least one HS256 secret is required")
        self._secrets = list(secrets)
        self.leeway = leeway

    async def claims(self, token: str, header: Mapping[str, Any]) -> tuple[Claims, TokenSource]:
        try:
            parsed = hs256.parse(token)
        except hs256.TokenError:
            raise InvalidTokenError("malformed token") from None
        # Each secret's signature is compared (in constant time); none is tried by failing.
        matching = next(
            (entry for entry in self._secrets if hs256.signature_matches(parsed, entry.secret)),
            None,
        )
        if matching is None:
            raise InvalidTokenError("bad signature", "no configured secret signed it")
        try:
            claims = hs256.decode(
                token,
                matching.secret,
                leeway=self.leeway,
                require=("exp",),
                verify_aud=False,
            )
        except hs256.TokenError as exc:
            raise _refused(exc.failure, str(exc)) from None
        return _access_claims(claims), matching.source

    async def aclose(self) -> None:
        return None


class JWKSCache:
    """Public keys from a JWKS URL: cached, refreshed when stale or on an unknown key id.

    A key id never seen before is fetched for at once, so a key rotated in moments after the
    last fetch works on its first use. Such fetches are spaced `min_refresh_interval` apart,
    and so are attempts while the endpoint fails, so neither made-up key ids nor an endpoint
    that is down can turn into one fetch per request. Stale keys keep serving while the
    endpoint is down. A key id it does not know is an outage while the last fetch failed
    (the key may have been published since), and an invalid token once a fetch succeeded.
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
        # Imported here: only a service that checks Better Auth's keys needs an HTTP client,
        # or PyJWT, whose import loads `cryptography` (shared/hs256.py). Both are loaded at
        # start-up, not on a first request.
        import httpx2  # noqa: PLC0415
        import jwt  # noqa: F401, PLC0415

        self.url = url
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self._client = client or httpx2.AsyncClient(timeout=timeout, follow_redirects=False)
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")
        self._attempts = 0
        # Until when (time.monotonic()) no attempt is made: after a failure, and after a
        # fetch for an unknown key id (for such fetches only).
        self._retry_at = -float("inf")
        self._next_unknown_key_fetch = -float("inf")
        self._last_fetch_failed = False
        self._lock = asyncio.Lock()

    async def get_key(self, kid: str | None) -> jwt.PyJWK:
        """The published key with this id, or InvalidTokenError / SigningKeysUnavailableError."""
        fresh = False
        if time.monotonic() - self._fetched_at > self.ttl:
            fresh = await self._refresh(for_unknown_key=False)
        key = self._lookup(kid)
        if key is None and not fresh:
            await self._refresh(for_unknown_key=True)  # perhaps rotated in since the last fetch
            key = self._lookup(kid)
        if key is None:
            if not self._keys or self._last_fetch_failed:
                raise SigningKeysUnavailableError("the signing keys could not be fetched")
            raise InvalidTokenError("unknown signing key", f"kid {shown(kid)} is not published")
        return key

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self, *, for_unknown_key: bool) -> bool:
        """Fetch unless attempts are spaced out now; whether the keys are just fetched."""
        import httpx2  # noqa: PLC0415 (loaded already, by __init__)
        import jwt  # noqa: PLC0415

        attempts_before = self._attempts
        async with self._lock:
            if self._attempts != attempts_before:
                return not self._last_fetch_failed  # another request fetched meanwhile
            now = time.monotonic()
            if now < self._retry_at or (for_unknown_key and now < self._next_unknown_key_fetch):
                return False
            self._attempts += 1
            if for_unknown_key:
                self._next_unknown_key_fetch = now + self.min_refresh_interval
            try:
                response = await self._client.get(self.url)
                response.raise_for_status()
                key_set = jwt.PyJWKSet.from_dict(response.json())
            except (httpx2.HTTPError, ValueError, jwt.PyJWTError) as exc:
                logger.warning("Could not fetch signing keys from the JWKS URL: %s", exc)
                self._last_fetch_failed = True
                self._retry_at = now + self.min_refresh_interval
                return False
            self._keys = {key.key_id: key for key in key_set.keys}
            self._fetched_at = now
            self._last_fetch_failed = False
            return True

    async def aclose(self) -> None:
        await self._client.aclose()


class JWKSKeys:
    """Better Auth's tokens, checked against its published keys, issuer and audience."""

    algorithms = JWKS_ALGORITHMS

    def __init__(
        self,
        keys: JWKSCache,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = DEFAULT_LEEWAY_SECONDS,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway

    async def claims(self, token: str, header: Mapping[str, Any]) -> tuple[Claims, TokenSource]:
        kid = header.get("kid")
        key = await self.keys.get_key(kid if isinstance(kid, str) else None)
        claims = _decode(token, key, str(header["alg"]), self.leeway)
        if self.issuer is not None and claims.get("iss") != self.issuer:
            raise InvalidTokenError(
                "wrong issuer", f"expected {shown(self.issuer)}, got {shown(claims.get('iss'))}"
            )
        if self.audience is not None:
            audience = claims.get("aud")
            audiences = audience if isinstance(audience, list) else [audience]
            if self.audience not in audiences:
                raise InvalidTokenError(
                    "wrong audience", f"expected {shown(self.audience)}, got {shown(audience)}"
                )
        return claims, TokenSource.BETTER_AUTH_JWKS

    async def aclose(self) -> None:
        await self.keys.aclose()


def _decode(token: str, key: jwt.PyJWK, algorithm: str, leeway: float) -> Claims:
    """The claims of a token whose signature the published `key` checks; `exp` required,
    `iat` not ahead."""
    import jwt  # noqa: PLC0415 (loaded already, with the key)

    try:
        claims: Claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            leeway=leeway,
            # Issuer and audience are the JWKS strategy's to check, with clearer reasons.
            options={"require": ["exp"], "verify_aud": False, "verify_iss": False},
        )
    except jwt.ExpiredSignatureError:
        raise _refused("expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _refused("missing claim", exc.claim) from None
    except jwt.ImmatureSignatureError:
        raise _refused("not yet valid") from None
    except jwt.InvalidSignatureError:
        raise InvalidTokenError("bad signature", "not the published key's") from None
    except jwt.DecodeError:
        raise _refused("malformed token") from None
    except jwt.PyJWTError as exc:
        raise _refused("invalid claims", str(exc)) from None
    return _access_claims(claims)


def _refused(failure: hs256.Failure, detail: str | None = None) -> InvalidTokenError:
    """The error for a token refused for `failure`, whichever library found it."""
    if failure == "expired":
        return TokenExpiredError("expired")
    if failure == "not yet valid":
        return InvalidTokenError(failure, "issued in the future, or nbf ahead")
    if failure in ("missing claim", "invalid claims"):
        return InvalidTokenError(failure, detail)
    return InvalidTokenError(failure)


def _access_claims(claims: Claims) -> Claims:
    token_type = claims.get("type")
    if token_type is not None and token_type != ACCESS_TOKEN_TYPE:
        raise InvalidTokenError("not an access token", f"type {shown(token_type)}")
    return claims


class VerifiedTokens:
    """Tokens already verified, by their text, each kept until it expires or for `max_age`.

    A client sends the same token with every request of its lifetime, so checking its
    signature and claims once is enough. An entry leaves when its token expires (with the
    leeway verification allows) or after `max_age`, whichever is sooner, so a key withdrawn
    from a JWKS stops serving within `max_age`; at most `size` entries, the oldest go first.
    Only tokens that passed are kept: a flood of bad tokens cannot fill it.
    """

    def __init__(self, *, size: int = 4096, max_age: float = 60.0, leeway: float) -> None:
        self.size = size
        self.max_age = max_age
        self.leeway = leeway
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, token: str) -> Principal | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        principal, until = entry
        if time.time() >= until:
            del self._entries[token]
            return None
        return principal

    def put(self, token: str, principal: Principal) -> None:
        expires = principal.claims.get("exp")
        if not isinstance(expires, int | float):
            return  # verification requires `exp`; anything else is not kept
        if len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]
        self._entries[token] = (principal, min(expires + self.leeway, time.time() + self.max_age))


class TokenVerifier:
    """Checks a bearer token with the strategy for its `alg` and names its user."""

    def __init__(
        self, strategies: Sequence[KeyStrategy], *, leeway: float = DEFAULT_LEEWAY_SECONDS
    ) -> None:
        self.strategies = list(strategies)
        self._by_algorithm = {
            algorithm: strategy for strategy in strategies for algorithm in strategy.algorithms
        }
        self._verified = VerifiedTokens(leeway=leeway)

    async def verify(self, token: str) -> Principal:
        """Return the principal, or raise InvalidTokenError / SigningKeysUnavailableError."""
        known = self._verified.get(token)
        if known is not None:
            return known
        principal = await self._verify(token)
        self._verified.put(token, principal)
        return principal

    async def _verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidTokenError("token too large", f"{len(token)} bytes")
        try:
            header = hs256.parse(token).header
        except hs256.TokenError:
            raise InvalidTokenError("malformed token") from None
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() not in _ACCEPTED_TYP):
            raise InvalidTokenError("not a JWT access token", f"typ {shown(typ)}")
        algorithm = header.get("alg")
        strategy = self._by_algorithm.get(algorithm) if isinstance(algorithm, str) else None
        if strategy is None:
            raise InvalidTokenError("unsupported algorithm", f"alg {shown(algorithm)}")
        claims, source = await strategy.claims(token, header)
        return Principal(user_id=_subject(claims, source), claims=claims, source=source)

    async def aclose(self) -> None:
        for strategy in self.strategies:
            await strategy.aclose()


def create_verifier(settings: ServiceSettings) -> TokenVerifier:
    """The verifier both services use: the same settings accept the same tokens everywhere.

    When BETTER_AUTH_SECRET is SECRET_KEY, nothing tells whose a token signed with it is, so
    it is taken as the frontend's (which may name its user in `id`).
    """
    leeway = DEFAULT_LEEWAY_SECONDS
    own = settings.signing_key
    frontend = settings.better_auth_secret.get_secret_value() if settings.better_auth_secret else ""
    secrets = [SigningSecret(own, TokenSource.AUTH_SERVICE)] if own != frontend else []
    if frontend:
        secrets.append(SigningSecret(frontend, TokenSource.FRONTEND_SECRET))
    strategies: list[KeyStrategy] = [SharedSecrets(secrets, leeway=leeway)]
    if settings.better_auth_jwks_url:
        strategies.append(
            JWKSKeys(
                JWKSCache(settings.better_auth_jwks_url),
                issuer=settings.better_auth_issuer,
                audience=settings.better_auth_audience,
                leeway=leeway,
            )
        )
    return TokenVerifier(strategies, leeway=leeway)


def _subject(claims: Mapping[str, Any], source: TokenSource) -> str:
    """The user id: `sub`; in a frontend's token without `sub`, `id` or else `userId`.

    The first of these claims present is the one used: an empty or malformed `sub` is
    refused, never replaced by another claim.
    """
    names = ("sub", "id", "userId") if source.is_frontend else ("sub",)
    name = next((name for name in names if name in claims), None)
    if name is None:
        raise InvalidTokenError("no subject", f"none of the claims {', '.join(names)}")
    value = claims[name]
    # Frontends may hold numeric user ids; PyJWT already refuses a `sub` that is no string.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidTokenError("bad subject", f"{name} is not a non-empty string")
    if len(value) > MAX_SUBJECT_LENGTH:
        raise InvalidTokenError("bad subject", f"{name} is over {MAX_SUBJECT_LENGTH} characters")
    if not value.isprintable():
        raise InvalidTokenError("bad subject", f"{name} has control characters")
    return value
