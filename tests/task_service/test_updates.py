"""PUT, PATCH (partial update or toggle), PATCH .../complete and DELETE."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from tests.task_service.conftest import auth, create_task, moment, tasks_url

FULL: dict[str, Any] = {
    "title": "Write report",
    "description": "Quarterly numbers",
    "completed": True,
    "priority": "high",
    "due_date": "2030-06-01T09:00:00Z",
    "tags": ["work", "q2"],
}


@pytest.fixture
async def task(client: httpx2.AsyncClient) -> dict[str, Any]:
    return await create_task(client, **FULL)


async def _read(client: httpx2.AsyncClient, task_id: int) -> dict[str, Any]:
    response = await client.get(tasks_url(task_id=task_id), headers=auth())
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_put_replaces_every_editable_field(
    client: httpx2.AsyncClient, task: dict[str, Any]
) -> None:
    replacement = {
        "title": "Rewrite report",
        "description": "Annual numbers",
        "completed": False,
        "priority": "low",
        "due_date": "2031-01-01T00:00:00Z",
        "tags": ["home"],
    }

    response = await client.put(tasks_url(task_id=task["id"]), json=replacement, headers=auth())

    assert response.status_code == 200
    body = response.json()
    assert {key: body[key] for key in replacement} == replacement
    assert body["id"] == task["id"]
    assert body["created_at"] == task["created_at"]
    assert moment(body, "updated_at") > moment(task, "updated_at")
    assert await _read(client, task["id"]) == body


async def test_put_with_some_fields_keeps_the_others(
    client: httpx2.AsyncClient, task: dict[str, Any]
) -> None:
    # What several frontends send: only the fields the user changed.
    response = await client.put(
        tasks_url(task_id=task["id"]), json={"title": "Renamed"}, headers=auth()
    )

    assert response.status_code == 200
    body = response.json()
    assert {key: body[key] for key in FULL} == {**FULL, "title": "Renamed"}
    assert moment(body, "updated_at") > moment(task, "updated_at")
    assert await _read(client, task["id"]) == body


async def test_put_without_a_title_keeps_the_title(
    client: httpx2.AsyncClient, task: dict[str, Any]
) -> None:
    response = await client.put(
        tasks_url(task_id=task["id"]), json={"priority": "low"}, headers=auth()
    )

    assert response.status_code == 200
    assert {key: response.json()[key] for key in FULL} == {**FULL, "priority": "low"}


@pytest.mark.parametrize("field", ["description", "due_date"])
async def test_put_with_an_explicit_null_clears_an_optional_field(
    client: httpx2.AsyncClient, task: dict[str, Any], field: str
) -> None:
    response = await client.put(tasks_url(task_id=task["id"]), json={field: None}, headers=auth())

    assert response.status_code == 200
    assert {key: response.json()[key] for key in FULL} == {**FULL, field: None}


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize("field", ["title", "completed", "priority", "tags"])
async def test_null_for_a_field_that_cannot_be_empty_is_422_and_changes_nothing(
    client: httpx2.AsyncClient, task: dict[str, Any], method: str, field: str
) -> None:
    response = await client.request(
        method, tasks_url(task_id=task["id"]), json={field: None}, headers=auth()
    )

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert response.json()["detail"][0]["loc"] == ["body", field]
    assert await _read(client, task["id"]) == task


async def test_put_with_an_empty_object_changes_nothing(
    client: httpx2.AsyncClient, task: dict[str, Any]
) -> None:
    response = await client.put(tasks_url(task_id=task["id"]), json={}, headers=auth())

    assert response.status_code == 200
    assert response.json() == task


async def test_put_without_a_body_is_422(client: httpx2.AsyncClient, task: dict[str, Any]) -> None:
    response = await client.put(tasks_url(task_id=task["id"]), headers=auth())

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert await _read(client, task["id"]) == task


async def test_put_accepts_a_whole_task_as_read_and_ignores_its_read_only_fields(
    client: httpx2.AsyncClient, task: dict[str, Any]
) -> None:
    sent_back = {
        **task,
        "title": "Edited",
        "id": task["id"] + 1000,
        "user_id": "mallory",
        "created_at": "2001-01-01T00:00:00Z",
    }

    response = await client.put(tasks_url(task_id=task["id"]), json=sent_back, headers=auth())

    assert response.status_code == 200
    body = response.json()
    assert body["title"] == "Edited"
    assert (body["id"], body["user_id"], body["created_at"]) == (
        task["id"],
        task["user_id"],
        task["created_at"],
    )


@pytest.mark.parametrize(
    "change",
    [
        {"title": "Renamed"},
        {"description": "New notes"},
        {"description": None},
        {"completed": False},
        {"priority": "low"},
        {"due_date": None},
        {"due_date": "2040-02-29T12:00:00Z"},
        {"tags": []},
        {"tags": ["a", "b"]},
        {"title": "Both", "priority": "medium"},
    ],
)
async def test_patch_changes_only_the_fields_given(
    client: httpx2.AsyncClient, task: dict[str, Any], change: dict[str, Any]
) -> None:
    response = await client.patch(tasks_url(task_id=task["id"]), json=change, headers=auth())

    assert response.status_code == 200
    body = response.json()
    expected = {**task, **change}
    assert {key: body[key] for key in FULL} == {key: expected[key] for key in FULL}
    assert moment(body, "updated_at") > moment(task, "updated_at")
    assert await _read(client, task["id"]) == body


async def test_patch_with_an_empty_object_changes_nothing(
    client: httpx2.AsyncClient, task: dict[str, Any]
) -> None:
    response = await client.patch(tasks_url(task_id=task["id"]), json={}, headers=auth())

    assert response.status_code == 200
    assert response.json() == task
    assert await _read(client, task["id"]) == task


async def test_patch_with_only_unknown_fields_changes_nothing(
    client: httpx2.AsyncClient, task: dict[str, Any]
) -> None:
    response = await client.patch(
        tasks_url(task_id=task["id"]), json={"colour": "red", "user_id": "mallory"}, headers=auth()
    )

    assert response.status_code == 200
    assert response.json() == task


async def _patch_without_body(client: httpx2.AsyncClient, task_id: int) -> httpx2.Response:
    return await client.patch(tasks_url(task_id=task_id), headers=auth())


async def _patch_with_json_null(client: httpx2.AsyncClient, task_id: int) -> httpx2.Response:
    headers = {**auth(), "Content-Type": "application/json"}
    return await client.patch(tasks_url(task_id=task_id), content=b"null", headers=headers)


async def _patch_json_without_body(client: httpx2.AsyncClient, task_id: int) -> httpx2.Response:
    headers = {**auth(), "Content-Type": "application/json"}
    return await client.patch(tasks_url(task_id=task_id), headers=headers)


async def _patch_complete(client: httpx2.AsyncClient, task_id: int) -> httpx2.Response:
    return await client.patch(f"{tasks_url(task_id=task_id)}/complete", headers=auth())


TOGGLES = [
    pytest.param(_patch_without_body, id="patch-no-body"),
    pytest.param(_patch_with_json_null, id="patch-json-null"),
    pytest.param(_patch_json_without_body, id="patch-json-empty"),
    pytest.param(_patch_complete, id="patch-complete"),
]


@pytest.mark.parametrize("toggle", TOGGLES)
async def test_toggling_flips_completed_both_ways(client: httpx2.AsyncClient, toggle: Any) -> None:
    task = await create_task(client, title="Flip me", priority="low", tags=["x"])

    first = await toggle(client, task["id"])
    second = await toggle(client, task["id"])

    assert first.status_code == second.status_code == 200
    assert first.json()["completed"] is True
    assert second.json()["completed"] is False
    assert moment(first.json(), "updated_at") > moment(task, "updated_at")
    assert moment(second.json(), "updated_at") > moment(first.json(), "updated_at")
    unchanged = {"title", "priority", "tags", "created_at", "id"}
    assert {key: second.json()[key] for key in unchanged} == {key: task[key] for key in unchanged}


@pytest.mark.parametrize("toggle", TOGGLES)
async def test_toggling_a_missing_task_is_404(client: httpx2.AsyncClient, toggle: Any) -> None:
    response = await toggle(client, 2**63 - 1)

    assert response.status_code == 404
    assert response.json()["code"] == "task_not_found"


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_updating_a_missing_task_is_404(client: httpx2.AsyncClient, method: str) -> None:
    response = await client.request(
        method, tasks_url(task_id=123_456_789), json={"title": "x"}, headers=auth()
    )

    assert response.status_code == 404
    assert response.json()["code"] == "task_not_found"


async def test_delete_removes_the_task(client: httpx2.AsyncClient, task: dict[str, Any]) -> None:
    other = await create_task(client, title="Keep me")

    response = await client.delete(tasks_url(task_id=task["id"]), headers=auth())

    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(tasks_url(task_id=task["id"]), headers=auth())).status_code == 404
    listed = await client.get(tasks_url(), headers=auth())
    assert [t["id"] for t in listed.json()] == [other["id"]]


async def test_deleting_twice_is_404_the_second_time(
    client: httpx2.AsyncClient, task: dict[str, Any]
) -> None:
    first = await client.delete(tasks_url(task_id=task["id"]), headers=auth())
    second = await client.delete(tasks_url(task_id=task["id"]), headers=auth())

    assert first.status_code == 204
    assert second.status_code == 404
    assert second.json()["code"] == "task_not_found"
