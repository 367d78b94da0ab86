"""ListShortcut answers the list in front of the router exactly as the route would."""

from __future__ import annotations

import httpx2
import pytest
from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.deps import service_state
from task_service.deps import TaskOwner, task_owner
from task_service.routes import ListShortcut
from tests.support.tokens import bearer, mint
from tests.task_service.conftest import ALICE, BOB, auth, create_task, tasks_url


class _Counting:
    """The router's own stack, counting the paths that reach it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


def _shortcut(app: FastAPI) -> ListShortcut:
    shortcut = app.router.middleware_stack
    assert isinstance(shortcut, ListShortcut)
    return shortcut


@pytest.fixture
def router_count(task_app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> _Counting:
    """Counts what passes the shortcut on to the router."""
    shortcut = _shortcut(task_app)
    counting = _Counting(shortcut.app)
    monkeypatch.setattr(shortcut, "app", counting)
    return counting


async def test_lists_skip_the_router_and_other_requests_reach_it(
    client: httpx2.AsyncClient, router_count: _Counting
) -> None:
    task = await create_task(client, title="one")
    router_count.paths.clear()

    listed = await client.get(tasks_url(), headers=auth())
    slashed = await client.get(tasks_url() + "/", headers=auth())
    read = await client.get(tasks_url(task_id=task["id"]), headers=auth())
    health = await client.get("/health/live")

    assert [r.status_code for r in (listed, slashed, read, health)] == [200, 200, 200, 200]
    assert listed.json() == slashed.json() == [task]
    assert router_count.paths == [tasks_url(task_id=task["id"]), "/health/live"]


async def test_lists_reach_the_router_while_dependencies_are_overridden(
    task_app: FastAPI, client: httpx2.AsyncClient, router_count: _Counting
) -> None:
    async def bob_always(request: Request, user_id: str) -> TaskOwner:
        return TaskOwner(BOB, service_state(task_app).database)

    await create_task(client, user_id=BOB, title="bob's")
    router_count.paths.clear()
    task_app.dependency_overrides[task_owner] = bob_always
    try:
        listed = await client.get(tasks_url(ALICE))  # no token: the stand-in decides
    finally:
        task_app.dependency_overrides.clear()

    assert listed.status_code == 200
    assert [task["title"] for task in listed.json()] == ["bob's"]
    assert router_count.paths == [tasks_url(ALICE)]


def _answer(response: httpx2.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    # Each answer has its own request id; everything else must be the same.
    headers = [(k, v) for k, v in response.headers.multi_items() if k != "x-request-id"]
    return response.status_code, response.content, headers


async def test_its_answers_are_the_routes_byte_for_byte(
    task_app: FastAPI, client: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for number, (priority, completed) in enumerate(
        [("high", False), ("low", True), ("medium", False), ("high", True), ("low", False)]
    ):
        await create_task(
            client,
            title=f"Task {number} apple" if number % 2 else f"Task {number}",
            priority=priority,
            completed=completed,
            tags=["home"] if number % 2 else ["work", "home"],
        )
    first_page = await client.get(tasks_url(), params={"limit": 2}, headers=auth())
    cursor = first_page.headers["x-next-cursor"]
    expired = mint(sub=ALICE, lifetime=-60)
    requests: list[tuple[str, str, dict[str, str]]] = [
        ("GET", tasks_url(), auth()),
        ("GET", tasks_url() + "?limit=2", auth()),
        ("GET", tasks_url() + f"?limit=2&cursor={cursor}", auth()),
        ("GET", tasks_url() + "?limit=2&offset=2", auth()),
        ("GET", tasks_url() + "?limit=2&offset=99", auth()),
        ("GET", tasks_url() + "?sort=title&order=asc&limit=3", auth()),
        ("GET", tasks_url() + "?sort=due_date&order=desc", auth()),
        ("GET", tasks_url() + "?status=completed", auth()),
        ("GET", tasks_url() + "?priority=high&tag=home", auth()),
        ("GET", tasks_url() + "?search=apple", auth()),
        ("HEAD", tasks_url() + "?limit=2", auth()),
        ("GET", tasks_url(BOB), auth(BOB)),
        # Refusals, in the order the route checks: the token, the user, the query.
        ("GET", tasks_url(), {}),
        ("GET", tasks_url(), {"Authorization": "Bearer not-a-token"}),
        ("GET", tasks_url(), {"Authorization": "Basic YWxpY2U6cHc="}),
        ("GET", tasks_url(), bearer(expired)),
        ("GET", tasks_url(), auth(BOB)),
        ("GET", tasks_url("x" * 300), auth()),
        ("GET", tasks_url() + "?limit=0", auth()),
        ("GET", tasks_url() + "?sort=bogus", auth()),
        ("GET", tasks_url() + "?limit=2&limit=3", auth()),
        ("GET", tasks_url() + "?cursor=garbage", auth()),
        ("GET", tasks_url(BOB) + "?limit=0", auth()),
    ]

    shortcut = _shortcut(task_app)
    answers = [await client.request(m, url, headers=h) for m, url, h in requests]
    monkeypatch.setattr(task_app.router, "middleware_stack", shortcut.app)  # the router alone
    routed = [await client.request(m, url, headers=h) for m, url, h in requests]

    statuses = [answer.status_code for answer in answers]
    assert statuses == [200] * 12 + [401, 401, 401, 401, 403, 422, 422, 422, 422, 422, 403]
    for (method, url, _headers), answer, expected in zip(requests, answers, routed, strict=True):
        assert _answer(answer) == _answer(expected), (method, url)
