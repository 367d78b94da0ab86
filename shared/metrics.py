"""Prometheus metrics of every process, on the maintained `prometheus-client` library.

Each process is one service, so the metrics live in the library's default registry. Route
labels are route templates (`/api/{user_id}/tasks`), never raw paths: a path carries user
ids and whatever a client makes up, and each distinct label value is a time series kept for
the life of the process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import Scope

from shared.route_index import template_of

# A path no route matched. Counted under one label, whatever it was.
UNMATCHED_ROUTE = "<unmatched>"

REQUESTS = Counter(
    "http_requests", "HTTP requests answered, by route template", ["method", "route", "status"]
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to the end of its response",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
IN_FLIGHT = Gauge("http_requests_in_flight", "HTTP requests being answered")


class _InFlight:
    """The requests being answered, counted without a lock and read by the gauge at a
    scrape: every request is counted in the event loop's thread."""

    def __init__(self) -> None:
        self.count = 0

    def read(self) -> int:
        return self.count


in_flight = _InFlight()
IN_FLIGHT.set_function(in_flight.read)
UPSTREAM_ERRORS = Counter(
    "gateway_upstream_errors",
    "Proxied requests a service failed to answer, by kind (refused, timeout, busy)",
    ["service", "kind"],
)
DATABASE_ERRORS = Counter(
    "database_errors", "Database failures seen by requests (unavailable, error)", ["kind"]
)
LOGIN_FAILURES = Counter("auth_login_failures", "Sign-ins refused for a wrong email or password")
RATE_LIMITED = Counter("auth_rate_limited", "Requests refused by a rate limit", ["limit"])
TOKEN_REFUSALS = Counter("token_refusals", "Bearer tokens refused, by reason", ["reason"])


class _PoolCollector(Collector):
    """Reads connection pools when scraped, so nothing is counted on the request path."""

    def __init__(self) -> None:
        self.pools: dict[tuple[str, str], Callable[[], dict[str, int]]] = {}

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "connection_pool",
            "Connections of each pool by state (size, checked_out, overflow, idle, limit)",
            labels=["kind", "name", "state"],
        )
        for (kind, name), read in list(self.pools.items()):
            for state, value in read().items():
                family.add_metric([kind, name, state], value)
        yield family


_POOLS = _PoolCollector()
REGISTRY.register(_POOLS)


def watch_pool(kind: str, name: str, read: Callable[[], dict[str, int]]) -> None:
    """Report a pool's connection counts under `connection_pool{kind, name, state}`.

    `kind` is `database` or `upstream`; a later call for the same pool replaces the reader
    (tests build many apps in one process).
    """
    _POOLS.pools[(kind, name)] = read


def render_metrics() -> tuple[bytes, str]:
    """The text exposition of every metric, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def route_template(scope: Scope) -> str:
    """The template of the route that answered: the one a proxy named in
    `scope["state"]["route"]`, else the app's template matching the path, else
    UNMATCHED_ROUTE."""
    named = scope.get("state", {}).get("route")
    if isinstance(named, str):
        return named
    app = scope.get("app")
    template = template_of(app, scope["path"]) if app is not None else None
    return template or UNMATCHED_ROUTE


def observe_request(scope: Scope, method: str, status: int, seconds: float) -> None:
    """Count and time one answered request (called by RequestContextMiddleware, which
    already tracks both, so metrics cost no middleware layer of their own)."""
    route = route_template(scope)
    key = (method, route, status)
    series = _request_series.get(key)
    if series is None:
        series = _request_series[key] = (
            REQUESTS.labels(method, route, str(status)),
            LATENCY.labels(method, route),
        )
    counter, latency = series
    counter.inc()
    latency.observe(seconds)


# Each label set's children, looked up once: `labels()` checks and locks on every call. Route
# labels are templates, so this stays as small as the metrics themselves.
_request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
