"""Users see and change their own tasks only."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from tests.task_service.conftest import ALICE, BOB, ROUTE_IDS, ROUTES, auth, create_task, tasks_url


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=ROUTE_IDS)
async def test_another_users_path_is_403(
    client: httpx2.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    # The routes are Alice's; Bob's token may not use them, whatever the task id.
    response = await client.request(method, path, json=body, headers=auth(BOB))

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert isinstance(response.json()["detail"], str)


async def test_user_ids_are_compared_exactly(client: httpx2.AsyncClient) -> None:
    response = await client.get(tasks_url("Alice"), headers=auth(ALICE))

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PUT", "", {"title": "hijacked"}),
        ("PATCH", "", {"title": "hijacked"}),
        ("PATCH", "", None),
        ("PATCH", "/complete", None),
        ("DELETE", "", None),
    ],
)
async def test_another_users_task_on_ones_own_path_is_404_and_untouched(
    client: httpx2.AsyncClient, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    bobs = await create_task(client, user_id=BOB, title="Bob's secret")

    response = await client.request(
        method, tasks_url(ALICE, bobs["id"]) + suffix, json=body, headers=auth(ALICE)
    )

    assert response.status_code == 404
    assert response.json()["code"] == "task_not_found"
    still = await client.get(tasks_url(BOB, bobs["id"]), headers=auth(BOB))
    assert still.json() == bobs


async def test_lists_hold_only_the_callers_tasks(client: httpx2.AsyncClient) -> None:
    await create_task(client, user_id=ALICE, title="a1")
    await create_task(client, user_id=BOB, title="b1")
    await create_task(client, user_id=ALICE, title="a2")

    alices = await client.get(tasks_url(ALICE), headers=auth(ALICE))
    bobs = await client.get(tasks_url(BOB), headers=auth(BOB))

    assert [t["title"] for t in alices.json()] == ["a2", "a1"]
    assert alices.headers["x-total-count"] == "2"
    assert [t["title"] for t in bobs.json()] == ["b1"]
    assert bobs.headers["x-total-count"] == "1"
