"""shared/hs256.py against PyJWT: the same token, the same verdict, the same bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest

from shared import hs256
from tests.support.tokens import SECRET_KEY

NOW = int(time.time())
LEEWAY = 30
# PyJWT's errors as the services report them (shared/tokens.py): what a header check
# refuses is a malformed token, whatever its class.
_FAILURES: list[tuple[type[jwt.PyJWTError], hs256.Failure]] = [
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.MissingRequiredClaimError, "missing claim"),
    (jwt.ImmatureSignatureError, "not yet valid"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.DecodeError, "malformed token"),
    (jwt.PyJWTError, "invalid claims"),
]


def _segment(value: Any) -> bytes:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _token(header: Any, claims: Any, *, key: str = SECRET_KEY) -> str:
    """A token signed with `key` whatever its header and claims say."""
    signing_input = _segment(header) + b"." + _segment(claims)
    signature = hmac.new(key.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _segment(signature)).decode()


def _good(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": "u", "iat": NOW, "exp": NOW + 600, "jti": "j", "fam": "f"}
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


HEADER = {"alg": "HS256", "typ": "JWT"}
GOOD = _token(HEADER, _good())
_HEADER_SEGMENT, _PAYLOAD_SEGMENT, _SIGNATURE_SEGMENT = GOOD.split(".")

TOKENS = {
    "good": GOOD,
    "wrong key": _token(HEADER, _good(), key="another-key-0123456789abcdef-0123456789abcdef"),
    "expired": _token(HEADER, _good(exp=NOW - 600)),
    "expired within the leeway": _token(HEADER, _good(exp=NOW - 10)),
    "expired just past the leeway": _token(HEADER, _good(exp=NOW - LEEWAY - 30)),
    "exp a string of digits": _token(HEADER, _good(exp=str(NOW + 600))),
    "exp a float": _token(HEADER, _good(exp=NOW + 600.5)),
    "exp not a number": _token(HEADER, _good(exp="soon")),
    "exp null": _token(HEADER, {**_good(), "exp": None}),
    "no exp": _token(HEADER, _good(exp=None)),
    "no sub": _token(HEADER, _good(sub=None)),
    "sub a number": _token(HEADER, _good(sub=7)),
    "jti a number": _token(HEADER, _good(jti=7)),
    "iat ahead": _token(HEADER, _good(iat=NOW + 600)),
    "iat ahead within the leeway": _token(HEADER, _good(iat=NOW + 10)),
    "iat ahead just past the leeway": _token(HEADER, _good(iat=NOW + LEEWAY + 30)),
    "iat not a number": _token(HEADER, _good(iat="x")),
    "nbf ahead": _token(HEADER, _good(nbf=NOW + 600)),
    "nbf ahead within the leeway": _token(HEADER, _good(nbf=NOW + 10)),
    "nbf not a number": _token(HEADER, _good(nbf=[1])),
    "an audience": _token(HEADER, _good(aud="someone")),
    "an empty audience": _token(HEADER, _good(aud="")),
    "several faults": _token(HEADER, _good(exp=NOW - 600, nbf=NOW + 600, sub=1, aud="x")),
    "alg HS512": _token({"alg": "HS512", "typ": "JWT"}, _good()),
    "alg none": _token({"alg": "none"}, _good()),
    "no alg": _token({"typ": "JWT"}, _good()),
    "kid a string": _token({**HEADER, "kid": "k1"}, _good()),
    "kid a number": _token({**HEADER, "kid": 1}, _good()),
    "crit b64 given": _token({**HEADER, "crit": ["b64"], "b64": True}, _good()),
    "crit b64 missing": _token({**HEADER, "crit": ["b64"]}, _good()),
    "crit unknown": _token({**HEADER, "crit": ["exp"], "exp": 1}, _good()),
    "crit empty": _token({**HEADER, "crit": []}, _good()),
    "crit not a list": _token({**HEADER, "crit": "b64"}, _good()),
    "b64 false, not critical": _token({**HEADER, "b64": False}, b""),
    "b64 false, critical": _token({**HEADER, "b64": False, "crit": ["b64"]}, b""),
    "header an array": _token(["HS256"], _good()),
    "header not JSON": _token(b"{nope", _good()),
    "payload an array": _token(HEADER, [1, 2]),
    "payload not JSON": _token(HEADER, b"{nope"),
    "payload in UTF-16": _token(HEADER, json.dumps(_good()).encode("utf-16")),
    "unicode claims": _token(HEADER, _good(name="Zoë ✓")),
    "two segments": f"{_HEADER_SEGMENT}.{_PAYLOAD_SEGMENT}",
    "four segments": f"{GOOD}.{_SIGNATURE_SEGMENT}",
    "empty": "",
    "empty signature": f"{_HEADER_SEGMENT}.{_PAYLOAD_SEGMENT}.",
    "signature padded": f"{GOOD}=",
    "signature padded twice": f"{GOOD}==",
    "signature padded three times": f"{GOOD}===",
    "signature off the alphabet": f"{GOOD[:-1]}!",
    "signature a character too long": f"{GOOD}A",
    "signature not canonical": GOOD[:-1] + ("B" if GOOD[-1] != "B" else "C"),
    "header padded": f"{_HEADER_SEGMENT}=.{_PAYLOAD_SEGMENT}.{_SIGNATURE_SEGMENT}",
    "a non-ASCII character": f"{GOOD[:-1]}é",
    "spaces around": f" {GOOD} ",
}
OPTIONS = {
    "access": {"require": ("exp",), "verify_aud": False, "verify_exp": True},
    "refresh": {"require": ("exp", "sub", "jti", "fam"), "verify_aud": True, "verify_exp": True},
    "refresh, expiry not checked": {
        "require": ("exp", "sub", "jti", "fam"),
        "verify_aud": True,
        "verify_exp": False,
    },
}


def _pyjwt_verdict(token: str, options: dict[str, Any]) -> dict[str, Any] | hs256.Failure:
    try:
        jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return "malformed token"
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            SECRET_KEY,
            algorithms=["HS256"],
            leeway=LEEWAY,
            options={
                "require": list(options["require"]),
                "verify_aud": options["verify_aud"],
                "verify_exp": options["verify_exp"],
                "verify_iss": False,
            },
        )
    except jwt.PyJWTError as exc:
        return next(failure for kind, failure in _FAILURES if isinstance(exc, kind))
    return claims


def _our_verdict(token: str, options: dict[str, Any]) -> dict[str, Any] | hs256.Failure:
    try:
        return hs256.decode(token, SECRET_KEY, leeway=LEEWAY, **options)
    except hs256.TokenError as exc:
        return exc.failure


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
@pytest.mark.parametrize("token", TOKENS.values(), ids=TOKENS.keys())
def test_each_token_gets_pyjwts_verdict(token: str, options: dict[str, Any]) -> None:
    assert _our_verdict(token, options) == _pyjwt_verdict(token, options)


def test_the_cases_cover_every_verdict() -> None:
    verdicts = {
        verdict if isinstance(verdict, str) else "accepted"
        for options in OPTIONS.values()
        for token in TOKENS.values()
        for verdict in [_our_verdict(token, options)]
    }

    assert verdicts == {"accepted", *(failure for _, failure in _FAILURES)}


@pytest.mark.parametrize("token", TOKENS.values(), ids=TOKENS.keys())
def test_each_header_is_read_as_pyjwt_reads_it(token: str) -> None:
    try:
        expected: dict[str, Any] | None = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        expected = None
    try:
        header: dict[str, Any] | None = hs256.parse(token).header
    except hs256.TokenError:
        header = None

    assert header == expected


@pytest.mark.parametrize(
    "claims",
    [_good(), _good(name="Zoë ✓", email="z@example.com", extra=None), {"sub": "u", "n": 1.5}],
    ids=["plain", "unicode and null", "a float"],
)
def test_tokens_are_signed_byte_for_byte_as_pyjwt_signs_them(claims: dict[str, Any]) -> None:
    assert hs256.encode(claims, SECRET_KEY) == jwt.encode(claims, SECRET_KEY, algorithm="HS256")
