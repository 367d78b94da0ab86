"""Minting tokens the way other parties would, to test what the services accept."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt

SECRET_KEY = "test-secret-key-0123456789abcdef-0123456789abcdef"
BETTER_AUTH_SECRET = "test-better-auth-secret-0123456789abcdef-012345"


def mint(
    secret: str = SECRET_KEY,
    *,
    lifetime: int = 900,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """An HS256 token; claims given as None are left out."""
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": "user-1",
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "type": "access",
    }
    body.update(claims)
    body = {key: value for key, value in body.items() if value is not None}
    return jwt.encode(body, secret, algorithm="HS256", headers=headers)


def unsigned(**claims: Any) -> str:
    """An `alg: none` token, as an attacker would send it."""
    now = int(time.time())
    body = {"sub": "user-1", "iat": now, "exp": now + 900, "type": "access", **claims}

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(body)}."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
