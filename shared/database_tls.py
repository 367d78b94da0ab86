"""TLS for PostgreSQL connections, with libpq's meaning of `sslmode` and `sslrootcert`.

asyncpg reads `sslrootcert` only from a DSN (SQLAlchemy hands it keyword arguments), knows
nothing of `sslrootcert=system` and cannot do channel binding, so the context is built here.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.database_url import SYSTEM_ROOT_CERT, DatabaseUrl, SslMode

logger = logging.getLogger(__name__)

Verification = Literal["none", "chain", "chain and host name"]


class DatabaseConfigurationError(Exception):
    """A database setting that retrying cannot fix. The message is one line naming the
    cause and the setting to change, and never holds a password."""


@dataclass(frozen=True)
class Tls:
    """How connections to one database are protected."""

    mode: SslMode
    # What asyncpg's `ssl` argument gets: False (no TLS), "allow"/"prefer" (asyncpg's own
    # fallback logic, which never verifies, as in libpq) or a context to require.
    asyncpg_ssl: bool | str | ssl.SSLContext
    # For a wss:// transport: the same verification, applied to the WebSocket's TLS.
    context: ssl.SSLContext
    verification: Verification
    root: str | None

    def describe(self) -> str:
        if self.verification == "none":
            return f"sslmode={self.mode}"
        return f"sslmode={self.mode}, verifying the {self.verification} against {self.root}"


def _default_root_cert() -> str | None:
    """libpq's fallbacks when the URL names no root certificate."""
    if env := os.environ.get("PGSSLROOTCERT"):
        return env
    home_root = Path("~/.postgresql/root.crt").expanduser()
    return str(home_root) if home_root.is_file() else None


def tls_for(url: DatabaseUrl) -> Tls:
    """The TLS a URL asks for; raises DatabaseConfigurationError when it cannot be given."""
    mode: SslMode = url.sslmode or "prefer"
    root = url.sslrootcert
    if url.channel_binding == "require":
        # Channel binding protects SCRAM from a man in the middle; without it in asyncpg, the
        # same protection comes from refusing any certificate but the host's own.
        if url.sslmode == "disable":
            raise DatabaseConfigurationError(
                "DATABASE_URL asks for channel_binding=require and sslmode=disable: "
                "channel binding needs TLS; remove one of them"
            )
        mode = "verify-full"
        logger.info(
            "DATABASE_URL asks for channel_binding=require, which the PostgreSQL driver cannot "
            "do: verifying the server's certificate and host name against %s instead",
            f"sslrootcert={root}"
            if root and root != SYSTEM_ROOT_CERT
            else "the system trust store",
        )
        root = root or SYSTEM_ROOT_CERT
    if root == SYSTEM_ROOT_CERT:
        if url.sslmode is not None and url.sslmode != "verify-full" and mode != "verify-full":
            raise DatabaseConfigurationError(
                f"DATABASE_URL sslmode={url.sslmode} may not be used with sslrootcert=system: "
                "use sslmode=verify-full (or leave sslmode out)"
            )
        mode = "verify-full"

    if mode == "disable":
        return Tls(mode, False, _unverified_context(), "none", None)
    if mode in ("allow", "prefer"):
        return Tls(mode, mode, _unverified_context(), "none", None)

    if root is None:
        root = _default_root_cert()
    if root is None and mode in ("verify-ca", "verify-full"):
        raise DatabaseConfigurationError(
            f"DATABASE_URL sslmode={mode} needs a root certificate: add sslrootcert=<path to "
            "the CA file> or sslrootcert=system (the system trust store) to DATABASE_URL"
        )
    if root is None:
        # libpq's `require` without a root certificate: encrypted, but anyone's certificate.
        context = _unverified_context()
        verification: Verification = "none"
    else:
        context = _verifying_context(root)
        verification = "chain and host name" if mode == "verify-full" else "chain"
        context.check_hostname = mode == "verify-full"
    if url.sslcert:
        try:
            context.load_cert_chain(url.sslcert, keyfile=url.sslkey)
        except (OSError, ssl.SSLError) as exc:
            raise DatabaseConfigurationError(
                f"DATABASE_URL sslcert={url.sslcert} cannot be used ({_reason(exc)}): "
                "check sslcert and sslkey"
            ) from None
    described_root = "the system trust store" if root == SYSTEM_ROOT_CERT else root
    return Tls(mode, context, context, verification, described_root)


def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _verifying_context(root: str) -> ssl.SSLContext:
    if root == SYSTEM_ROOT_CERT:
        # The operating system's store (honouring SSL_CERT_FILE / SSL_CERT_DIR, as OpenSSL does).
        context = ssl.create_default_context()
    else:
        try:
            context = ssl.create_default_context(cafile=root)
        except FileNotFoundError:
            raise DatabaseConfigurationError(
                f"root certificate file {root} does not exist: fix sslrootcert in DATABASE_URL "
                "(or PGSSLROOTCERT), or use sslrootcert=system"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise DatabaseConfigurationError(
                f"root certificate file {root} cannot be read ({_reason(exc)}): "
                "fix sslrootcert in DATABASE_URL"
            ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
