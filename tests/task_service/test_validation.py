"""Bad input is a 422 in FastAPI's `{"detail": [...]}` shape, never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from tests.task_service.conftest import auth, create_task, tasks_url


async def _post(client: httpx2.AsyncClient, body: Any) -> httpx2.Response:
    # ASCII-escaped JSON, so that lone surrogates can be sent at all.
    headers = {**auth(), "content-type": "application/json"}
    return await client.post(tasks_url(), content=json.dumps(body), headers=headers)


def _error_locations(response: httpx2.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    assert all(isinstance(error["msg"], str) for error in detail)
    return [error["loc"] for error in detail]


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({}, ["body", "title"]),
        ({"title": ""}, ["body", "title"]),
        ({"title": "   "}, ["body", "title"]),
        ({"title": "\t\n"}, ["body", "title"]),
        ({"title": "t" * 201}, ["body", "title"]),
        ({"title": None}, ["body", "title"]),
        ({"title": 42}, ["body", "title"]),
        ({"title": "ok", "description": "d" * 1001}, ["body", "description"]),
        ({"title": "ok", "priority": "urgent"}, ["body", "priority"]),
        ({"title": "ok", "priority": "High"}, ["body", "priority"]),
        ({"title": "ok", "priority": None}, ["body", "priority"]),
        ({"title": "ok", "completed": "yes"}, ["body", "completed"]),
        ({"title": "ok", "completed": 1}, ["body", "completed"]),
        ({"title": "ok", "tags": [f"t{n}" for n in range(11)]}, ["body", "tags"]),
        ({"title": "ok", "tags": [f"t{n}" for n in range(11)] + ["t0"]}, ["body", "tags"]),
        ({"title": "ok", "tags": ["t" * 31]}, ["body", "tags", 0]),
        ({"title": "ok", "tags": ["fine", ""]}, ["body", "tags", 1]),
        ({"title": "ok", "tags": ["fine", "   "]}, ["body", "tags", 1]),
        ({"title": "ok", "tags": "work"}, ["body", "tags"]),
        ({"title": "ok", "tags": [7]}, ["body", "tags", 0]),
        ({"title": "ok", "tags": None}, ["body", "tags"]),
        ({"title": "ok", "due_date": "tomorrow"}, ["body", "due_date"]),
        ({"title": "ok", "due_date": "2030-02-30T10:00:00Z"}, ["body", "due_date"]),
        ({"title": "ok", "due_date": "2030-01-01T25:00:00Z"}, ["body", "due_date"]),
        ({"title": "ok", "due_date": "2030-01-01"}, ["body", "due_date"]),
        ({"title": "ok", "due_date": 1_900_000_000}, ["body", "due_date"]),
        ({"title": "ok", "due_date": "1900000000"}, ["body", "due_date"]),
        ({"title": "ok", "due_date": ""}, ["body", "due_date"]),
        # In range as written, out of range once converted to UTC (or beyond what
        # Python's datetime can hold): still a 422, never an overflow error.
        ({"title": "ok", "due_date": "0001-01-01T00:00:00+01:00"}, ["body", "due_date"]),
        ({"title": "ok", "due_date": "9999-12-31T23:00:00-05:00"}, ["body", "due_date"]),
        ({"title": "ok", "due_date": "99999-01-01T00:00:00Z"}, ["body", "due_date"]),
        # Text PostgreSQL cannot store is refused up front, on every backend.
        ({"title": "nul\u0000byte"}, ["body", "title"]),
        ({"title": "lone \ud800 surrogate"}, ["body", "title"]),
        ({"title": "ok", "description": "a\u0000b"}, ["body", "description"]),
        ({"title": "ok", "tags": ["fine", "x\u0000"]}, ["body", "tags", 1]),
    ],
)
async def test_bad_fields_of_a_new_task_are_422(
    client: httpx2.AsyncClient, body: dict[str, Any], location: list[Any]
) -> None:
    response = await _post(client, body)

    assert location in _error_locations(response)


@pytest.mark.parametrize(
    "body", [None, [], ["title"], "title", 3], ids=["null", "array", "list", "string", "number"]
)
async def test_a_body_that_is_not_an_object_is_422(client: httpx2.AsyncClient, body: Any) -> None:
    response = await _post(client, body)

    assert _error_locations(response)[0][0] == "body"


@pytest.mark.parametrize("content", [b"{", b'{"title": "x",}', b"{'title': 'x'}", b"\xff\xfe"])
async def test_malformed_json_is_422(client: httpx2.AsyncClient, content: bytes) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    response = await client.post(tasks_url(), content=content, headers=headers)

    assert _error_locations(response)[0][0] == "body"


async def test_missing_body_on_create_is_422(client: httpx2.AsyncClient) -> None:
    response = await client.post(tasks_url(), headers=auth())

    assert _error_locations(response) == [["body"]]


@pytest.mark.parametrize(
    ("field", "sent", "stored"),
    [
        ("title", "  Trim me  ", "Trim me"),
        ("title", "t" * 200, "t" * 200),
        ("title", "  " + "t" * 200 + "  ", "t" * 200),
        ("title", "Ünïcødé ✓", "Ünïcødé ✓"),
        ("description", "d" * 1000, "d" * 1000),
        ("description", "  notes \n", "notes"),
        ("description", "   ", None),
        ("description", "", None),
        ("tags", [f"t{n}" for n in range(10)], [f"t{n}" for n in range(10)]),
        ("tags", ["t" * 30], ["t" * 30]),
        ("tags", [" b ", "a", "b", "a "], ["b", "a"]),
        # The limit counts different tags: repeats are dropped before it is checked.
        ("tags", ["a"] * 11, ["a"]),
        ("tags", [f"t{n % 10}" for n in range(25)], [f"t{n}" for n in range(10)]),
        ("due_date", "2030-01-31T17:00:00Z", "2030-01-31T17:00:00Z"),
        ("due_date", "2030-01-31T17:00:00", "2030-01-31T17:00:00Z"),
        ("due_date", "2030-01-31 17:00:00", "2030-01-31T17:00:00Z"),
        ("due_date", "2030-01-31T17:00:00+02:00", "2030-01-31T15:00:00Z"),
        ("due_date", "2030-01-31T23:30:00-05:00", "2030-02-01T04:30:00Z"),
        ("due_date", "2030-01-31T17:00:00.250Z", "2030-01-31T17:00:00.250000Z"),
        ("due_date", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
        ("due_date", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
        ("due_date", None, None),
    ],
)
async def test_accepted_values_are_stored_normalized(
    client: httpx2.AsyncClient, field: str, sent: Any, stored: Any
) -> None:
    created = await create_task(client, **{"title": "x", field: sent})
    read = await client.get(tasks_url(task_id=created["id"]), headers=auth())

    assert created[field] == stored
    assert read.json()[field] == stored


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"title": None}, ["body", "title"]),
        ({"title": "  "}, ["body", "title"]),
        ({"completed": None}, ["body", "completed"]),
        ({"completed": "true"}, ["body", "completed"]),
        ({"priority": None}, ["body", "priority"]),
        ({"priority": "none"}, ["body", "priority"]),
        ({"tags": None}, ["body", "tags"]),
        ({"tags": [f"x{n}" for n in range(11)]}, ["body", "tags"]),
        ({"due_date": "soon"}, ["body", "due_date"]),
        ({"description": "d" * 1001}, ["body", "description"]),
    ],
)
async def test_bad_fields_of_a_partial_update_are_422_and_change_nothing(
    client: httpx2.AsyncClient, body: dict[str, Any], location: list[Any]
) -> None:
    task = await create_task(client, title="Before", tags=["kept"], priority="low")

    response = await client.patch(tasks_url(task_id=task["id"]), json=body, headers=auth())

    assert location in _error_locations(response)
    assert (await client.get(tasks_url(task_id=task["id"]), headers=auth())).json() == task


async def test_bad_fields_of_a_replacement_are_422(client: httpx2.AsyncClient) -> None:
    task = await create_task(client, title="Before")

    response = await client.put(
        tasks_url(task_id=task["id"]),
        json={"title": "t" * 201, "tags": [f"x{n}" for n in range(11)]},
        headers=auth(),
    )

    assert sorted(_error_locations(response)) == [["body", "tags"], ["body", "title"]]


async def test_malformed_json_in_a_partial_update_is_422_not_a_toggle(
    client: httpx2.AsyncClient,
) -> None:
    task = await create_task(client, title="Before")
    headers = {**auth(), "Content-Type": "application/json"}

    response = await client.patch(tasks_url(task_id=task["id"]), content=b"{", headers=headers)

    assert _error_locations(response)[0][0] == "body"
    assert (await client.get(tasks_url(task_id=task["id"]), headers=auth())).json() == task


@pytest.mark.parametrize(
    "body",
    [
        b'{"title": NaN}',
        b'{"title": "ok", "priority": Infinity}',
        b'{"title": "ok", "tags": [-Infinity]}',
        b"NaN",
    ],
)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_non_finite_numbers_are_422_on_create_and_update(
    client: httpx2.AsyncClient, method: str, body: bytes
) -> None:
    # Python's JSON parser accepts NaN and Infinity, which JSON cannot echo back.
    task = await create_task(client, title="Before")
    url = tasks_url() if method == "POST" else tasks_url(task_id=task["id"])
    headers = {**auth(), "content-type": "application/json"}

    response = await client.request(method, url, content=body, headers=headers)

    assert _error_locations(response)[0][0] == "body"
    echoed = json.dumps([error.get("input") for error in response.json()["detail"]])
    assert any(word in echoed for word in ('"NaN"', '"Infinity"', '"-Infinity"'))
    assert (await client.get(tasks_url(task_id=task["id"]), headers=auth())).json() == task


@pytest.mark.parametrize("depth", [700, 100_000])
async def test_deeply_nested_json_is_a_4xx(client: httpx2.AsyncClient, depth: int) -> None:
    # Shallow enough to parse but too deep to echo back, or too deep to parse at all.
    body = b'{"title": ' + b"[" * depth + b"]" * depth + b"}"
    headers = {**auth(), "content-type": "application/json"}

    response = await client.post(tasks_url(), content=body, headers=headers)

    assert response.status_code in (400, 422)
    assert set(response.json()) == {"detail", "code"}


BAD_TASK_IDS = ["0", "-1", str(2**63), "99999999999999999999999", "abc", "1.5", "1e3", "%20"]
ROUTES_WITH_TASK_ID = [
    ("GET", ""),
    ("PUT", ""),
    ("PATCH", ""),
    ("PATCH", "/complete"),
    ("DELETE", ""),
]


@pytest.mark.parametrize(("method", "suffix"), ROUTES_WITH_TASK_ID)
@pytest.mark.parametrize("task_id", BAD_TASK_IDS)
async def test_task_ids_that_cannot_exist_are_422(
    client: httpx2.AsyncClient, method: str, suffix: str, task_id: str
) -> None:
    body = {"title": "x"} if method == "PUT" else None
    response = await client.request(
        method, tasks_url(task_id=task_id) + suffix, json=body, headers=auth()
    )

    assert _error_locations(response) == [["path", "task_id"]]


@pytest.mark.parametrize(("method", "suffix"), ROUTES_WITH_TASK_ID)
async def test_the_largest_possible_task_id_is_a_plain_404(
    client: httpx2.AsyncClient, method: str, suffix: str
) -> None:
    body = {"title": "x"} if method == "PUT" else None
    response = await client.request(
        method, tasks_url(task_id=2**63 - 1) + suffix, json=body, headers=auth()
    )

    assert response.status_code == 404
    assert response.json()["code"] == "task_not_found"


async def test_a_user_id_longer_than_any_subject_is_422(client: httpx2.AsyncClient) -> None:
    response = await client.get(tasks_url("u" * 256), headers=auth())

    assert _error_locations(response) == [["path", "user_id"]]


@pytest.mark.parametrize("params", [{"q": "a\x00b"}, {"tag": "\x00"}])
async def test_unstorable_text_in_filters_is_422(
    client: httpx2.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get(tasks_url(), params=params, headers=auth())

    assert [error["loc"][0] for error in response.json()["detail"]] == ["query"]
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
