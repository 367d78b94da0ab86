"""Request and response bodies of the auth service."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, EmailStr, Field, StringConstraints

from shared.tokens import MAX_TOKEN_BYTES
from shared.validators import StorableText, blank_to_none

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
EMAIL_MAX_LENGTH = 320


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def normalize_email(value: str) -> str:
    """The form an email is stored and looked up in, at registration and login alike.

    Emails are unique regardless of case, surrounding spaces and Unicode normal form (an
    accented letter may arrive composed or decomposed).
    """
    return unicodedata.normalize("NFC", value.strip().lower())


Email = Annotated[
    EmailStr,
    BeforeValidator(_strip),
    StorableText,
    AfterValidator(normalize_email),
    Field(
        max_length=EMAIL_MAX_LENGTH,
        examples=["ada@example.com"],
        description="An email address; special-use domains (.test, .local, .invalid, ...) "
        "are refused",
    ),
]
NewPassword = Annotated[
    str,
    Field(
        min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH, examples=["correct horse"]
    ),
    StorableText,
]
DisplayName = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=100), StorableText] | None,
    AfterValidator(blank_to_none),
]
Token = Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_BYTES)]


class RegisterRequest(BaseModel):
    email: Email
    password: NewPassword
    name: DisplayName = None


class LoginRequest(BaseModel):
    # Not validated as an email: any unknown login gets the same 401 as a wrong password.
    email: Annotated[
        str,
        Field(min_length=1, max_length=EMAIL_MAX_LENGTH, examples=["ada@example.com"]),
        StorableText,
        AfterValidator(normalize_email),
    ]
    password: Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX_LENGTH), StorableText]


class RefreshRequest(BaseModel):
    refresh_token: Token


class UserPublic(BaseModel):
    id: str
    email: str
    name: str | None
    created_at: datetime


class CurrentUserPublic(BaseModel):
    """The signed-in user: their account here, or what a frontend's token says of them."""

    id: str
    email: str | None
    name: str | None
    created_at: datetime | None
    identity_source: Literal["account", "token"] = Field(
        description="`account`: this service's account. `token`: a user of the frontend's "
        "(Better Auth) with no account here, described by the claims of their token."
    )


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a token kind, not a secret)
    expires_in: int = Field(description="Lifetime of the access token, in seconds")
    user: UserPublic


# The login route reads JSON or an OAuth2 password form (what the /docs Authorize button
# sends); both are documented here because the route parses the body itself.
LOGIN_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": LoginRequest.model_json_schema()},
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "required": ["username", "password"],
                "properties": {
                    "username": {"type": "string", "description": "The account's email"},
                    "password": {"type": "string", "format": "password"},
                    "grant_type": {"type": "string", "enum": ["password"]},
                },
            }
        },
    },
}
