"""Cursor (keyset) pages of GET /api/{user_id}/tasks, on every sort and in both orders."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from fastapi import FastAPI

from task_service.models import PRIORITIES, Task
from tests.task_service.conftest import ALICE, BOB, auth, create_task, insert_tasks, tasks_url

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SORTS = ["created_at", "updated_at", "due_date", "priority", "title"]
TOTAL = 41  # Alice's tasks below


@pytest.fixture
async def varied(client: httpx2.AsyncClient, task_app: FastAPI) -> None:
    """Alice's tasks with ties on every key (the id decides), missing due dates, titles that
    differ only in case, and Bob's tasks in between."""
    tasks = [
        Task(
            user_id=BOB if n % 7 == 3 else ALICE,
            title=["apple", "Apple", "ÄPFEL", "banana", "Öl", "öl"][n % 6] + f" {n % 4}",
            priority=PRIORITIES[n % 3],
            due_date=None if n % 3 == 1 else T0 + timedelta(days=n % 5),
            created_at=T0 + timedelta(hours=n // 3),
            updated_at=T0 + timedelta(minutes=n % 4),
            completed=n % 2 == 0,
            tags=["even"] if n % 2 == 0 else [],
        )
        for n in range(48)
    ]
    await insert_tasks(task_app, *tasks)


async def _get(client: httpx2.AsyncClient, query: dict[str, Any]) -> httpx2.Response:
    response = await client.get(tasks_url(), params=query, headers=auth())
    assert response.status_code == 200, response.text
    return response


async def _walk(
    client: httpx2.AsyncClient, query: dict[str, Any]
) -> tuple[list[int], list[httpx2.Response]]:
    """Every page from the first, each following the previous one's X-Next-Cursor."""
    pages = [await _get(client, query)]
    while "x-next-cursor" in pages[-1].headers:
        cursor = pages[-1].headers["x-next-cursor"]
        pages.append(await _get(client, {**query, "cursor": cursor}))
        assert len(pages) < 50, "the cursor does not move on"
    return [task["id"] for page in pages for task in page.json()], pages


@pytest.mark.usefixtures("varied")
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("sort", SORTS)
async def test_cursor_pages_add_up_to_the_whole_list_in_order(
    client: httpx2.AsyncClient, sort: str, order: str
) -> None:
    whole = [task["id"] for task in (await _get(client, {"sort": sort, "order": order})).json()]
    assert len(whole) == TOTAL

    ids, pages = await _walk(client, {"sort": sort, "order": order, "limit": 4})

    assert ids == whole
    # 41 tasks: ten full pages, each naming the next, then a short one naming none.
    assert [len(page.json()) for page in pages] == [4] * 10 + [1]
    assert {page.headers["x-total-count"] for page in pages} == {str(TOTAL)}


@pytest.mark.usefixtures("varied")
@pytest.mark.parametrize(
    "filters",
    [
        {"status": "pending"},
        {"status": "completed", "priority": "high"},
        {"tag": "even"},
        {"q": "apple"},
    ],
)
@pytest.mark.parametrize("sort", SORTS)
async def test_cursor_pages_keep_the_filters(
    client: httpx2.AsyncClient, sort: str, filters: dict[str, str]
) -> None:
    whole = await _get(client, {**filters, "sort": sort})

    ids, pages = await _walk(client, {**filters, "sort": sort, "limit": 3})

    assert ids == [task["id"] for task in whole.json()]
    assert {page.headers["x-total-count"] for page in pages} == {whole.headers["x-total-count"]}


async def test_a_full_last_page_names_an_empty_one(client: httpx2.AsyncClient) -> None:
    for n in range(4):
        await create_task(client, title=f"t{n}")

    first = await _get(client, {"limit": 2})
    second = await _get(client, {"limit": 2, "cursor": first.headers["x-next-cursor"]})
    third = await _get(client, {"limit": 2, "cursor": second.headers["x-next-cursor"]})

    assert (len(first.json()), len(second.json()), third.json()) == (2, 2, [])
    assert "x-next-cursor" not in third.headers
    assert "link" not in third.headers
    assert third.headers["x-total-count"] == "4"


async def test_a_short_first_page_names_no_next_page(client: httpx2.AsyncClient) -> None:
    await create_task(client)

    response = await _get(client, {"limit": 5})

    assert "x-next-cursor" not in response.headers
    assert "link" not in response.headers


async def test_the_link_header_is_the_next_page_relative_with_the_same_filters(
    client: httpx2.AsyncClient,
) -> None:
    for n in range(6):
        await create_task(client, title=f"t{n}", priority="high")
    query = {"priority": "high", "sort": "title", "limit": 2, "offset": 0}

    first = await _get(client, query)
    link = first.headers["link"]

    assert link.startswith("</api/alice/tasks?")
    assert link.endswith('>; rel="next"')
    url = urlsplit(link[1 : link.index(">")])
    assert parse_qs(url.query) == {
        "priority": ["high"],
        "sort": ["title"],
        "limit": ["2"],
        "cursor": [first.headers["x-next-cursor"]],
    }
    following = await client.get(link[1 : link.index(">")], headers=auth())
    assert [t["title"] for t in following.json()] == ["t2", "t3"]


async def test_a_cursor_survives_the_deletion_of_the_task_it_names(
    client: httpx2.AsyncClient,
) -> None:
    tasks = [await create_task(client, title=f"t{n}") for n in range(5)]
    first = await _get(client, {"limit": 2})
    assert [t["title"] for t in first.json()] == ["t4", "t3"]

    await client.delete(tasks_url(task_id=tasks[3]["id"]), headers=auth())
    await create_task(client, title="newer")
    second = await _get(client, {"limit": 2, "cursor": first.headers["x-next-cursor"]})

    # Neither repeated nor skipped, whatever changed before the cursor.
    assert [t["title"] for t in second.json()] == ["t2", "t1"]


@pytest.mark.parametrize("title", ["\x01" * 200, "🎉" * 200, '"\\' * 100])
async def test_a_title_as_long_as_any_makes_a_cursor_that_works(
    client: httpx2.AsyncClient, title: str
) -> None:
    tasks = [await create_task(client, title=title) for _ in range(3)]

    ids, pages = await _walk(client, {"sort": "title", "limit": 1})

    assert ids == [task["id"] for task in tasks]
    assert len(pages) == 4


def _cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


GOOD_MOMENT = "2030-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("cursor", "params"),
    [
        ("not a cursor", {}),
        ("%%%", {}),
        ("", {}),
        ("YQ", {}),  # base64 of "a": not JSON
        (base64.urlsafe_b64encode(b"\xff\xfe").decode(), {}),  # not UTF-8
        (_cursor("created_at", "desc", GOOD_MOMENT), {}),  # a part missing
        (_cursor("created_at", "desc", GOOD_MOMENT, 1, 2), {}),  # a part too many
        (_cursor({"sort": "created_at"}), {}),
        (_cursor("id", "desc", GOOD_MOMENT, 1), {}),
        (_cursor("created_at", "up", GOOD_MOMENT, 1), {}),
        (_cursor("created_at", "desc", "yesterday", 1), {}),
        (_cursor("created_at", "desc", "2030-01-01T00:00:00", 1), {}),  # no offset
        (_cursor("created_at", "desc", None, 1), {}),  # only due dates may be missing
        (_cursor("created_at", "desc", 5, 1), {}),
        (_cursor("created_at", "desc", GOOD_MOMENT, 0), {}),
        (_cursor("created_at", "desc", GOOD_MOMENT, 2**63), {}),
        (_cursor("created_at", "desc", GOOD_MOMENT, "1"), {}),
        (_cursor("created_at", "desc", GOOD_MOMENT, 1.5), {}),
        (_cursor("priority", "desc", "urgent", 1), {"sort": "priority"}),
        (_cursor("title", "asc", "nul\x00", 1), {"sort": "title"}),
        (_cursor("title", "asc", "t" * 201, 1), {"sort": "title"}),
        ("A" * 2001, {}),
    ],
)
async def test_a_bad_cursor_is_422(
    client: httpx2.AsyncClient, cursor: str, params: dict[str, Any]
) -> None:
    await create_task(client)

    response = await client.get(tasks_url(), params={**params, "cursor": cursor}, headers=auth())

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert [error["loc"] for error in response.json()["detail"]] == [["query", "cursor"]]


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "title"},  # the cursor is of the default sort, created_at
        {"order": "asc"},  # ... and of its default order, desc
        {"offset": 3},
    ],
)
async def test_a_cursor_of_another_sort_or_with_an_offset_is_422(
    client: httpx2.AsyncClient, params: dict[str, Any]
) -> None:
    for n in range(3):
        await create_task(client, title=f"t{n}")
    cursor = (await _get(client, {"limit": 1})).headers["x-next-cursor"]

    response = await client.get(tasks_url(), params={**params, "cursor": cursor}, headers=auth())

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert "cursor" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("title", "asc", "ß" * 200, 2**63 - 1),
        _cursor("due_date", "desc", None, 2**63 - 1),
        _cursor("due_date", "asc", "9999-12-31T23:59:59.999999+00:00", 1),
        _cursor("created_at", "desc", "0001-01-01T00:00:00+00:00", 1),
        _cursor("priority", "desc", "low", 1),
    ],
)
async def test_a_made_up_but_well_formed_cursor_is_just_a_position(
    client: httpx2.AsyncClient, cursor: str
) -> None:
    await create_task(client)
    sort, order = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))[:2]

    response = await client.get(
        tasks_url(), params={"sort": sort, "order": order, "cursor": cursor}, headers=auth()
    )

    assert response.status_code == 200
    assert response.headers["x-total-count"] == "1"
