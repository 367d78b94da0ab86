"""HS256 JSON Web Tokens (RFC 7515, RFC 7519) with the standard library: the tokens the auth
service signs with SECRET_KEY, and the frontend's, signed with BETTER_AUTH_SECRET.

PyJWT reads them as well, and still checks the tokens of Better Auth's published keys
(shared/tokens.py). But importing PyJWT loads `cryptography` for its asymmetric algorithms:
about 9 MiB of each service's memory (bench/history.md) that HS256 never uses. So these
functions make the checks PyJWT (the version in requirements.txt) makes of an HS256 token,
in its order, and tests/shared/test_hs256.py holds their verdicts to PyJWT's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

ALGORITHM = "HS256"
_BASE64URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
# Header extensions a token may declare critical (RFC 7515 section 4.1.11): PyJWT's.
_SUPPORTED_CRITICAL = frozenset({"b64"})

Failure = Literal[
    "malformed token",
    "bad signature",
    "expired",
    "not yet valid",
    "missing claim",
    "invalid claims",
]


class TokenError(Exception):
    """Why a token was refused: `failure` is the kind, the message its detail."""

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure


@dataclass(frozen=True)
class ParsedToken:
    """A compact JWS taken apart, its signature not checked yet."""

    header: dict[str, Any]
    signing_input: bytes
    payload: bytes
    signature: bytes


def encode(claims: Mapping[str, Any], key: str) -> str:
    """The token of `claims`, signed with `key`: byte for byte what PyJWT's `encode` makes."""
    header = _encode_segment(json.dumps({"alg": ALGORITHM, "typ": "JWT"}, separators=(",", ":")))
    payload = _encode_segment(json.dumps(dict(claims), separators=(",", ":")))
    signing_input = header + b"." + payload
    return (signing_input + b"." + _encode_segment(_sign(signing_input, key))).decode()


def parse(token: str) -> ParsedToken:
    """The token's parts; TokenError unless it is a well-formed compact JWS whose header
    PyJWT would accept (what `jwt.get_unverified_header` checks)."""
    try:
        signing_input, signature_segment = token.encode().rsplit(b".", 1)
        header_segment, payload_segment = signing_input.split(b".", 1)
    except (ValueError, UnicodeEncodeError):
        raise TokenError("malformed token", "Not enough segments") from None
    header = _json_object(_decode_segment(header_segment, "header"), "header")
    if header.get("b64", True) is False:
        # A detached payload (RFC 7797), which no caller here supplies.
        if payload_segment:
            raise TokenError(
                "malformed token", "Payload segment must be empty when 'b64' is false."
            )
        payload = b""
    else:
        payload = _decode_segment(payload_segment, "payload")
    signature = _decode_segment(signature_segment, "crypto")
    if "kid" in header and not isinstance(header["kid"], str):
        raise TokenError("malformed token", "Key ID header parameter must be a string")
    if "crit" in header:
        _check_critical(header)
    return ParsedToken(header, signing_input, payload, signature)


def decode(
    token: str,
    key: str,
    *,
    leeway: float = 0,
    require: Iterable[str] = (),
    verify_exp: bool = True,
    verify_aud: bool = True,
) -> dict[str, Any]:
    """The claims of an HS256 token signed with `key`, checked as PyJWT's `decode` checks
    them (`iat` and `nbf` not ahead, `exp` not passed, give or take `leeway` seconds; the
    `require`d claims present; `sub` and `jti` strings; no `aud` unless `verify_aud` is
    off), or TokenError."""
    parsed = parse(token)
    header = parsed.header
    if header.get("b64", True) is False:
        critical = header.get("crit") or []
        if not isinstance(critical, list) or "b64" not in critical:
            raise TokenError("invalid claims", "The 'b64' header parameter requires 'crit'")
        raise TokenError("malformed token", "detached payloads are not accepted")
    if header.get("alg") != ALGORITHM:
        raise TokenError("invalid claims", "The specified alg value is not allowed")
    if not signature_matches(parsed, key):
        raise TokenError("bad signature", "Signature verification failed")
    claims = _json_object(parsed.payload, "payload")
    _check_claims(
        claims, leeway=leeway, require=require, verify_exp=verify_exp, verify_aud=verify_aud
    )
    return claims


def signature_matches(parsed: ParsedToken, key: str) -> bool:
    """Whether `key` signed the token (compared in constant time)."""
    return hmac.compare_digest(_sign(parsed.signing_input, key), parsed.signature)


def _sign(signing_input: bytes, key: str) -> bytes:
    return hmac.new(key.encode(), signing_input, hashlib.sha256).digest()


def _encode_segment(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _decode_segment(segment: bytes, name: str) -> bytes:
    """base64url without padding, as PyJWT reads it: trailing `=` tolerated, anything else
    outside the alphabet or not in its one canonical spelling refused."""
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if (
        padding > 2
        or (padding and len(segment) % 4)
        or len(stripped) % 4 == 1
        or not _BASE64URL.issuperset(stripped)
    ):
        raise TokenError("malformed token", f"Invalid {name} padding")
    try:
        decoded = base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
    except (TypeError, binascii.Error):
        raise TokenError("malformed token", f"Invalid {name} padding") from None
    if _encode_segment(decoded) != stripped:
        raise TokenError("malformed token", f"Invalid {name} padding")
    return decoded


def _json_object(data: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise TokenError("malformed token", f"Invalid {name} string: {exc}") from None
    if not isinstance(value, dict):
        raise TokenError("malformed token", f"Invalid {name} string: must be a json object")
    return value


def _check_critical(header: Mapping[str, Any]) -> None:
    critical = header["crit"]
    if not isinstance(critical, list) or not critical:
        raise TokenError("malformed token", "Invalid 'crit' header: must be a non-empty list")
    for extension in critical:
        if not isinstance(extension, str):
            raise TokenError("malformed token", "Invalid 'crit' header: values must be strings")
        if extension not in _SUPPORTED_CRITICAL:
            raise TokenError("malformed token", f"Unsupported critical extension: {extension}")
        if extension not in header:
            raise TokenError("malformed token", f"Critical extension '{extension}' is missing")


def _check_claims(
    claims: Mapping[str, Any],
    *,
    leeway: float,
    require: Iterable[str],
    verify_exp: bool,
    verify_aud: bool,
) -> None:
    for claim in require:
        if claims.get(claim) is None:
            raise TokenError("missing claim", claim)
    now = time.time()
    if "iat" in claims and _time_claim(claims, "iat") > now + leeway:
        raise TokenError("not yet valid", "The token is not yet valid (iat)")
    if "nbf" in claims and _time_claim(claims, "nbf") > now + leeway:
        raise TokenError("not yet valid", "The token is not yet valid (nbf)")
    if verify_exp and "exp" in claims and _time_claim(claims, "exp") <= now - leeway:
        raise TokenError("expired", "Signature has expired")
    # No audience is expected: a token naming one is meant for someone else.
    if verify_aud and claims.get("aud"):
        raise TokenError("invalid claims", "Invalid audience")
    if "sub" in claims and not isinstance(claims["sub"], str):
        raise TokenError("invalid claims", "Subject must be a string")
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise TokenError("invalid claims", "JWT ID must be a string")


def _time_claim(claims: Mapping[str, Any], name: str) -> int:
    try:
        return int(claims[name])
    except (ValueError, TypeError, OverflowError):
        failure: Failure = "invalid claims" if name == "iat" else "malformed token"
        raise TokenError(failure, f"The {name} claim must be an integer.") from None
