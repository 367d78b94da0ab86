"""One OpenAPI document for the whole API, merged from the services' own documents."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from gateway.upstream import Upstream

logger = logging.getLogger(__name__)

# The keys of a path item that name an operation.
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

# Each service documents its own health routes; the gateway's /health replaces them.
_SERVICE_ONLY_PATHS = frozenset({"/health", "/health/live"})
_REF_PREFIX = "#/components/"
_SCHEMA_REF = _REF_PREFIX + "schemas/"
_SCHEME_REF = _REF_PREFIX + "securitySchemes/"

OpenAPI = dict[str, Any]


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    """A copy of `node` with `$ref`s to renamed components pointing at the new names."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref in renames:
            return {**node, "$ref": renames[ref]}
        return {key: _rewrite_refs(value, renames) for key, value in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def _clashes(merged: OpenAPI, document: OpenAPI) -> dict[str, str]:
    """`$ref`s of `document` whose name is taken in `merged` by something different."""
    clashes = {}
    for section, components in document.get("components", {}).items():
        taken = merged.get("components", {}).get(section, {})
        for name, value in components.items():
            if name in taken and taken[name] != value:
                clashes[f"{_REF_PREFIX}{section}/{name}"] = name
    return clashes


def merge_openapi(base: OpenAPI, services: Mapping[str, OpenAPI]) -> OpenAPI:
    """Merge service documents into `base` (the gateway's own document).

    Paths are added as they are, except the services' health routes. An operation (path
    and method) documented twice is kept as first seen, the gateway's own before the
    services' in the order given, with a warning: the gateway routes each path to one
    service only. Components with the same name and content are kept once; a same-name
    component with other content is renamed with the service's prefix (`Tasks` + `Item`),
    and that service's references (and security requirements) follow it.
    """
    merged = copy.deepcopy(base)
    merged_components = merged.setdefault("components", {})
    tags = {tag["name"]: tag for tag in merged.get("tags", [])}

    for prefix, original in services.items():
        document = original
        renames: dict[str, str] = {}
        # Renaming one component changes those that refer to it: repeat until stable.
        while clashes := {
            ref: name for ref, name in _clashes(merged, document).items() if ref not in renames
        }:
            for ref, name in clashes.items():
                section = ref[len(_REF_PREFIX) :].split("/", 1)[0]
                renames[ref] = f"{_REF_PREFIX}{section}/{prefix}{name}"
            document = _rewrite_refs(_rename_components(original, renames), renames)
        document = _rename_security_requirements(document, renames)

        for section, components in document.get("components", {}).items():
            target = merged_components.setdefault(section, {})
            for name, value in components.items():
                target.setdefault(name, value)
        for path, item in document.get("paths", {}).items():
            if path in _SERVICE_ONLY_PATHS:
                continue
            target = merged.setdefault("paths", {}).setdefault(path, {})
            for key, value in item.items():
                if key not in target:
                    target[key] = value
                elif target[key] != value:
                    logger.warning(
                        "OpenAPI: %s %s of %s is documented already; keeping the first",
                        key.upper(),
                        path,
                        prefix,
                    )
        for tag in document.get("tags", []):
            tags.setdefault(tag["name"], tag)

    if tags:
        merged["tags"] = list(tags.values())
    return _without_unused_schemas(merged)


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node))
    return set()


def _schema_refs(node: Any) -> set[str]:
    return {ref for ref in _refs(node) if ref.startswith(_SCHEMA_REF)}


def _without_unused_schemas(document: OpenAPI) -> OpenAPI:
    """Drop schemas nothing reaches (those of the services' health routes, for one).

    Only schemas are dropped, so a reference from anywhere else in the document (paths,
    other components such as responses or parameters) keeps the schema it names, and the
    schemas that one names in turn.
    """
    components = document.get("components", {})
    schemas = components.get("schemas", {})
    rest = {section: value for section, value in components.items() if section != "schemas"}
    reachable: set[str] = set()
    pending = _schema_refs({**document, "components": rest})
    while pending:
        reachable |= pending
        pending = {
            ref
            for found in pending
            for ref in _schema_refs(schemas.get(found.removeprefix(_SCHEMA_REF)))
        } - reachable
    document["components"]["schemas"] = {
        name: value for name, value in schemas.items() if f"{_SCHEMA_REF}{name}" in reachable
    }
    return document


def _rename_components(document: OpenAPI, renames: Mapping[str, str]) -> OpenAPI:
    def name_of(section: str, name: str) -> str:
        ref = f"{_REF_PREFIX}{section}/{name}"
        return renames.get(ref, ref).rsplit("/", 1)[1]

    components = {
        section: {name_of(section, name): value for name, value in entries.items()}
        for section, entries in document.get("components", {}).items()
    }
    return {**document, "components": components}


def _rename_security_requirements(document: OpenAPI, renames: Mapping[str, str]) -> OpenAPI:
    """Operations name the security schemes they require instead of `$ref`ing them: a
    renamed scheme has to be renamed there too."""
    schemes = {
        old.removeprefix(_SCHEME_REF): new.removeprefix(_SCHEME_REF)
        for old, new in renames.items()
        if old.startswith(_SCHEME_REF)
    }
    if not schemes:
        return document

    def renamed(operation: Any) -> Any:
        if not isinstance(operation, dict) or "security" not in operation:
            return operation
        requirements = [
            {schemes.get(name, name): scopes for name, scopes in requirement.items()}
            for requirement in operation["security"]
        ]
        return {**operation, "security": requirements}

    paths = {
        path: {
            key: renamed(value) if key in _HTTP_METHODS else value for key, value in item.items()
        }
        for path, item in document.get("paths", {}).items()
    }
    return {**document, "paths": paths}


class OpenAPICache:
    """The merged document: fetched from the services, cached, refetched when stale.

    A service that is down leaves its part out until it answers. A request for the document
    asks again for every missing part (concurrent requests share one attempt in flight), so
    a partial document is never kept as the final one; a stale part that cannot be
    refreshed keeps serving.
    """

    def __init__(
        self,
        base: OpenAPI,
        services: Mapping[str, Upstream],
        *,
        poll_interval: float = 1.0,
        max_age: float = 300.0,
    ) -> None:
        self.base = base
        self.services = dict(services)
        self.poll_interval = poll_interval
        self.max_age = max_age
        self._documents: dict[str, OpenAPI] = {}
        self._fetched_at: dict[str, float] = {}
        self._merged: OpenAPI | None = None
        self._refreshing: asyncio.Future[OpenAPI] | None = None

    @property
    def complete(self) -> bool:
        return len(self._documents) == len(self.services)

    async def get(self) -> OpenAPI:
        """The merged document, fetching what is missing or stale first."""
        if self._merged is not None and not self._due(time.monotonic()):
            return self._merged
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
        # Shielded: a caller that is cancelled must not cancel the others' fetch.
        return await asyncio.shield(self._refreshing)

    async def aclose(self) -> None:
        """Stop a fetch still in flight (at shutdown)."""
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()
            await asyncio.wait([self._refreshing])

    def _due(self, now: float) -> list[str]:
        return [
            prefix
            for prefix in self.services
            if now - self._fetched_at.get(prefix, -float("inf")) > self.max_age
        ]

    async def _refresh(self) -> OpenAPI:
        now = time.monotonic()
        due = self._due(now)
        if due:
            results = await asyncio.gather(*(self._fetch(prefix, now) for prefix in due))
            if any(results):
                self._merged = None
        if self._merged is None:
            parts = {p: self._documents[p] for p in self.services if p in self._documents}
            self._merged = merge_openapi(self.base, parts)
        return self._merged

    async def _fetch(self, prefix: str, now: float) -> bool:
        """Fetch one service's document; True when what is cached changed."""
        upstream = self.services[prefix]
        try:
            status, document = await upstream.probe("/openapi.json")
            if status != 200:
                raise ValueError(f"HTTP {status}")
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.info("OpenAPI of %s not available: %s", prefix, type(exc).__name__)
            if prefix in self._documents:
                self._fetched_at[prefix] = now  # keep serving the stale copy for a while
            return False
        changed = self._documents.get(prefix) != document
        self._documents[prefix] = document
        self._fetched_at[prefix] = now
        return changed

    async def warm_up(self, attempts: int = 120) -> None:
        """Fetch in the background until every service has answered once."""
        for _ in range(attempts):
            await self.get()
            if self.complete:
                return
            await asyncio.sleep(self.poll_interval)
