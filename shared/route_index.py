"""The route templates an app serves, with each one's methods, read once from its OpenAPI
paths (FastAPI's own route objects know only their path inside their router)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.routing import compile_path

_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
# Where the index is kept on `app.state`, built at the first request that needs it.
_STATE_ATTRIBUTE = "route_index"


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    pattern: re.Pattern[str]
    methods: frozenset[str]


def route_index(app: Starlette) -> list[RouteTemplate]:
    """Every documented path template of `app` with the methods it serves (upper case).

    FastAPI's GET routes do not answer HEAD, so HEAD is named only where a route declares it.
    """
    index: list[RouteTemplate] | None = getattr(app.state, _STATE_ATTRIBUTE, None)
    if index is None:
        openapi = getattr(app, "openapi", None)
        paths = openapi().get("paths", {}) if callable(openapi) else {}
        index = [
            RouteTemplate(
                template,
                compile_path(template)[0],
                frozenset(m.upper() for m in operations if m in _HTTP_METHODS),
            )
            for template, operations in paths.items()
        ]
        setattr(app.state, _STATE_ATTRIBUTE, index)
    return index


def template_of(app: Starlette, path: str) -> str | None:
    """The template matching `path` (a trailing slash aside), or None."""
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    for route in route_index(app):
        if route.pattern.match(path):
            return route.template
    return None
