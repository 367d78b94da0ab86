"""A page far down a long list against the first: page 1 and page 200 of 10,000 tasks.

By offset, and by cursor when the service returns one for the next page (an
`X-Next-Cursor` header, or a `Link` header with rel="next"): the cursor of page 200 is
found by following the pages from the first.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx2

from bench.plans import explain_lists, plans_section
from bench.scenario import Results, Run, Scenario, ratio, target, wrk_table
from bench.seeding import User, register, seed_tasks, settle
from bench.wrk import report

NAME = "deep_pages"
TASKS = 10_000
PAGE_SIZE = 50
DEEP_PAGE = 200
RATIO_LIMIT = 1.2
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def next_cursor(headers: httpx2.Headers) -> str | None:
    """The cursor of the next page, from `X-Next-Cursor` or a `Link: <...>; rel="next"`."""
    if cursor := headers.get("x-next-cursor"):
        return str(cursor)
    for link in headers.get_list("link"):
        match = _NEXT_LINK.search(link)
        if match:
            values = parse_qs(urlsplit(match.group(1)).query).get("cursor")
            if values:
                return values[0]
    return None


def _deep_cursor(base_url: str, user: User) -> str | None:
    """The cursor of page DEEP_PAGE, or None when the service gives no cursors."""
    cursor = None
    with httpx2.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {user.token}"}, timeout=10
    ) as client:
        for _ in range(DEEP_PAGE - 1):
            query = f"limit={PAGE_SIZE}" + (f"&cursor={quote(cursor)}" if cursor else "")
            response = client.get(f"{user.tasks_path}?{query}")
            response.raise_for_status()
            cursor = next_cursor(response.headers)
            if cursor is None:
                return None
    return cursor


def measure(run: Run) -> dict[str, Any]:
    print(f"Deep pages: page 1 and page {DEEP_PAGE} of {TASKS:,} tasks", flush=True)
    stack = run.stack
    user = register(stack.base_url, "deep")
    asyncio.run(seed_tasks(run.database_url, run.task_schema, user.id, TASKS))
    asyncio.run(settle(run.database_url, run.task_schema))
    deep_offset = (DEEP_PAGE - 1) * PAGE_SIZE
    points = {
        "page 1": f"limit={PAGE_SIZE}",
        f"page {DEEP_PAGE}, offset": f"limit={PAGE_SIZE}&offset={deep_offset}",
    }
    # Straight at the task service: the gateway's share of each request would dilute the
    # difference.
    cursor = _deep_cursor(stack.task_service_url, user)
    if cursor is not None:
        points[f"page {DEEP_PAGE}, cursor"] = f"limit={PAGE_SIZE}&cursor={quote(cursor)}"
    urls = {
        label: (f"{stack.task_service_url}{user.tasks_path}?{query}", user)
        for label, query in points.items()
    }
    data: dict[str, Any] = {"wrk": {}, "cursor": cursor is not None}
    for label, result in run.best_lists(urls).items():
        report(label, result, data["wrk"])
    # After the runs, so the plans meet the same warm cache as the requests measured.
    data["query_plans"] = asyncio.run(
        explain_lists(run.database_url, run.task_schema, user.id, points)
    )
    first = data["wrk"]["page 1"]["p50_ms"]
    headline = run.results.headline
    for label in points:
        headline[f"deep_pages_plan_ms ({label})"] = data["query_plans"][f"{label}: page"][
            "execution_ms"
        ]
    for how in ("offset", "cursor"):
        label = f"page {DEEP_PAGE}, {how}"
        if label in data["wrk"]:
            headline[f"deep_page_vs_first_p50_ratio ({how})"] = ratio(
                data["wrk"][label]["p50_ms"], first
            )
    return data


def targets(results: Results) -> list[dict[str, Any]]:
    headline = results.headline
    how = "cursor" if results.scenarios[NAME]["cursor"] else "offset"
    return [
        target(
            f"p50 of page {DEEP_PAGE} / page 1 of a {TASKS:,}-task list, by {how}",
            headline[f"deep_page_vs_first_p50_ratio ({how})"],
            "<=",
            RATIO_LIMIT,
            "x",
        )
    ]


def section(results: Results) -> list[str]:
    data = results.scenarios[NAME]
    cursor = (
        "by the cursor the service returned for it, found by following the pages from the first"
        if data["cursor"]
        else "not by cursor: the service returned no cursor for a next page"
    )
    return [
        f"## Deep pages ({TASKS:,} tasks, {PAGE_SIZE} a page, the task service, moderate load)",
        "",
        f"Page {DEEP_PAGE} by offset, and {cursor}.",
        "",
        *wrk_table("page", data["wrk"]),
        *plans_section(data["query_plans"], TASKS),
    ]


SCENARIO = Scenario(NAME, measure, section, targets)
