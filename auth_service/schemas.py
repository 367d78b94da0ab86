"""Request and response bodies of the auth service."""

from __future__ import annotations

import contextlib
import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    EmailStr,
    Field,
    StrictBool,
    StringConstraints,
)

from shared.tokens import MAX_TOKEN_BYTES
from shared.validators import StorableText, blank_to_none

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
EMAIL_MAX_LENGTH = 320


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def normalize_email(value: str) -> str:
    """The one form an email is stored and looked up in, on every route that takes one.

    email_validator's normal form (IDNA domains as Unicode, UTS-46 mapping of full-width
    letters and ligatures), then lower case and NFC: an address matches itself however it
    was typed. Text that is no valid address cannot belong to an account; it is only
    trimmed, lower-cased and composed, so that it matches nothing rather than being refused.
    """
    text = value.strip()
    with contextlib.suppress(EmailNotValidError):
        text = validate_email(text, check_deliverability=False).normalized
    return unicodedata.normalize("NFC", text.lower())


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


# Not validated as an email: any unknown login gets the same 401 as a wrong password.
LoginEmail = Annotated[
    str,
    Field(min_length=1, max_length=EMAIL_MAX_LENGTH, examples=["ada@example.com"]),
    StorableText,
    AfterValidator(normalize_email),
]
LoginPassword = Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX_LENGTH), StorableText]


class LoginRequest(BaseModel):
    email: LoginEmail
    password: LoginPassword


class PasswordGrantForm(BaseModel):
    """The OAuth2 password grant (RFC 6749 section 4.3.2), as the /docs Authorize button posts it.

    FastAPI's `OAuth2PasswordRequestForm` reads the same fields but without the length and
    NUL limits every other sign-in input has; this form keeps them, so both routes refuse alike.
    """

    grant_type: Literal["password"] | None = None
    username: LoginEmail = Field(description="The account's email")
    password: LoginPassword
    scope: Annotated[str, Field(max_length=1000)] = ""
    client_id: Annotated[str | None, Field(max_length=255)] = None
    client_secret: Annotated[str | None, Field(max_length=255)] = None


class RefreshRequest(BaseModel):
    refresh_token: Token


class LogoutRequest(BaseModel):
    """What to end: the sign-in of `refresh_token` (else of the bearer token), or with
    `everywhere` every sign-in of its user."""

    refresh_token: Token | None = None
    # Strict: pydantic would otherwise read 0, 0.0 or "no" as false without a word.
    everywhere: StrictBool = False


class PasswordChangeRequest(BaseModel):
    current_password: LoginPassword
    new_password: NewPassword


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
