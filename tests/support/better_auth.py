"""A stand-in for Better Auth's JWT plugin: Ed25519 keys, tokens, and a JWKS over real HTTP."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.http_server import serve

JWKS_PATH = "/api/auth/jwks"


@dataclass
class FakeBetterAuth:
    """What Better Auth's JWT plugin publishes at /api/auth/jwks, served for real."""

    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    fetches: int = 0
    up: bool = True

    def add_key(self, kid: str) -> None:
        self.keys[kid] = Ed25519PrivateKey.generate()

    def token(self, kid: str, **claims: Any) -> str:
        """A token signed with that key; claims given as None are left out."""
        body = {"sub": "ba-user", "iat": int(time.time()), "exp": int(time.time()) + 900}
        body.update(claims)
        body = {name: value for name, value in body.items() if value is not None}
        return jwt.encode(body, self.keys[kid], algorithm="EdDSA", headers={"kid": kid})

    async def jwks(self, _request: Request) -> Response:
        self.fetches += 1
        if not self.up:
            return Response(status_code=503)
        keys = []
        for kid, key in self.keys.items():
            public = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**public, "kid": kid, "alg": "EdDSA"})
        return JSONResponse({"keys": keys})


@contextlib.asynccontextmanager
async def serve_better_auth(*kids: str) -> AsyncIterator[tuple[FakeBetterAuth, str]]:
    """A FakeBetterAuth with the given key ids, and the URL of its JWKS on loopback."""
    fake = FakeBetterAuth()
    for kid in kids:
        fake.add_key(kid)
    async with serve(Starlette(routes=[Route(JWKS_PATH, fake.jwks)])) as base_url:
        yield fake, f"{base_url}{JWKS_PATH}"
