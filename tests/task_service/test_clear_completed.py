"""DELETE /api/{user_id}/tasks?status=completed: clear the user's completed tasks at once."""

from __future__ import annotations

import httpx2
import pytest
from fastapi import FastAPI

from shared.deps import service_state
from tests.task_service.conftest import ALICE, BOB, auth, create_task, tasks_url
from tests.task_service.test_list_plans import sent_statements

CLEAR = {"status": "completed"}


async def _titles(client: httpx2.AsyncClient, user_id: str = ALICE) -> set[str]:
    response = await client.get(tasks_url(user_id), headers=auth(user_id))
    return {task["title"] for task in response.json()}


async def test_clearing_deletes_only_the_users_completed_tasks(
    client: httpx2.AsyncClient,
) -> None:
    for n in range(5):
        await create_task(client, title=f"done{n}", completed=True, priority="high")
    await create_task(client, title="open", priority="high")
    await create_task(client, user_id=BOB, title="bobs", completed=True)

    response = await client.delete(tasks_url(), params=CLEAR, headers=auth())

    assert response.status_code == 200
    assert response.json() == {"deleted": 5}
    assert await _titles(client) == {"open"}
    assert await _titles(client, BOB) == {"bobs"}


async def test_clearing_again_deletes_nothing(client: httpx2.AsyncClient) -> None:
    await create_task(client, completed=True)

    first = await client.delete(tasks_url(), params=CLEAR, headers=auth())
    second = await client.delete(tasks_url(), params=CLEAR, headers=auth())

    assert (first.json(), second.json()) == ({"deleted": 1}, {"deleted": 0})
    assert second.status_code == 200


async def test_clearing_is_one_delete_statement(
    client: httpx2.AsyncClient, task_app: FastAPI
) -> None:
    for n in range(4):
        await create_task(client, title=f"t{n}", completed=n % 2 == 0)

    async with sent_statements(service_state(task_app).database.engine) as sent:
        response = await client.delete(tasks_url(), params=CLEAR, headers=auth())

    assert response.json() == {"deleted": 2}
    statements = [statement for statement, _ in sent]
    assert [s.split()[0] for s in statements if not s.startswith(("BEGIN", "SAVEPOINT"))] == [
        "DELETE"
    ], statements


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?status=all",
        "?status=pending",
        "?status=",
        "?status=Completed",
        "?completed=true",
        "?status=completed&status=all",
        "?status=all&status=completed",
    ],
)
async def test_any_other_delete_of_the_collection_is_422_and_deletes_nothing(
    client: httpx2.AsyncClient, query: str
) -> None:
    await create_task(client, title="done", completed=True)
    await create_task(client, title="open")

    response = await client.delete(tasks_url() + query, headers=auth())

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert response.json()["detail"][0]["loc"] == ["query", "status"]
    assert await _titles(client) == {"done", "open"}


async def test_clearing_another_users_tasks_is_403(client: httpx2.AsyncClient) -> None:
    await create_task(client, user_id=BOB, title="bobs", completed=True)

    response = await client.delete(tasks_url(BOB), params=CLEAR, headers=auth(ALICE))

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert await _titles(client, BOB) == {"bobs"}
