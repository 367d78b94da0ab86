"""Which headers the proxy passes on, adds and drops, both ways."""

from __future__ import annotations

from starlette.types import Scope

# Meaningful for one connection only (RFC 9110 section 7.6.1): never forwarded either way.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade"}
)
# Nor is any Proxy-* header (Proxy-Authorization, Proxy-Connection, Proxy-Status, ...):
# each is meant for one proxy hop, not for the next.
_PROXY_PREFIX = b"proxy-"
# CORS is the gateway's alone: a service's Access-Control-* headers could admit origins
# the gateway refuses.
_CORS_PREFIX = b"access-control-"
# Replaced by the gateway's own values on the way in.
_REPLACED_REQUEST = frozenset(
    {b"host", b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
)
# The gateway frames the request it sends (it has read the whole body first): the client's
# framing, possibly malformed or ambiguous, is never relayed; nor is `Expect: 100-continue`,
# answered already by the gateway's server when it read the body.
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"expect"})
_DROPPED_REQUEST = HOP_BY_HOP | _REPLACED_REQUEST | _FRAMING
# RFC 9110 section 5.5: whitespace around a field value is not part of it (and the client
# library refuses to send it).
_OPTIONAL_WHITESPACE = b" \t"
# The gateway's server adds its own Date and Server.
_DROPPED_RESPONSE = HOP_BY_HOP | {b"date", b"server"}


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Header names a `Connection` header marks as hop-by-hop."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b","))
    return frozenset(tokens)


def request_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The client's headers, trimmed, minus hop-by-hop and framing ones, plus forwarding and
    request-id headers."""
    incoming: list[tuple[bytes, bytes]] = scope["headers"]
    marked = _connection_tokens(incoming)
    dropped = _DROPPED_REQUEST | marked if marked else _DROPPED_REQUEST
    headers = [
        (name, value.strip(_OPTIONAL_WHITESPACE))
        for name, value in incoming
        if name not in dropped and not name.startswith(_PROXY_PREFIX)
    ]

    client = scope.get("client")
    # The services trust the gateway's X-Forwarded-For (uvicorn --proxy-headers) and count
    # rate limits by it. The gateway's own uvicorn has already resolved the client from
    # trusted front proxies: that address is all that is passed on. Entries to its left
    # were written by the client and are worth nothing; kept, they would let a client pick
    # its address wherever a service trusts more than the gateway.
    headers.append((b"x-forwarded-for", client[0].encode("latin-1") if client else b"unknown"))
    headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode("latin-1")))
    host = next((value for name, value in incoming if name == b"host"), None)
    if host:
        headers.append((b"x-forwarded-host", host.strip(_OPTIONAL_WHITESPACE)))
    request_id = scope.get("state", {}).get("request_id")
    if request_id:
        headers.append((b"x-request-id", request_id.encode("ascii")))
    return headers


# RFC 9110 section 5.5: a field value is visible characters, obs-text, spaces and tabs.
_CONTROL = bytes([*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F])


def has_control_character(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether any header value holds a character HTTP does not allow in one."""
    # Deleting them and comparing lengths is a third of a regular expression's search.
    values = b"".join([value for _, value in headers])
    return len(values.translate(None, _CONTROL)) != len(values)


def response_headers(raw: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    """The service's headers minus hop-by-hop, Proxy-* and CORS ones, and Date and Server."""
    lowered = [(name.lower(), value) for name, value in raw]
    marked = _connection_tokens(lowered)
    dropped = _DROPPED_RESPONSE | marked if marked else _DROPPED_RESPONSE
    return [
        (name, value)
        for name, value in lowered
        if name not in dropped and not name.startswith((_PROXY_PREFIX, _CORS_PREFIX))
    ]
