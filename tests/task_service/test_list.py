"""GET /api/{user_id}/tasks: filters, sorting, stable order and paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from task_service.models import Task
from tests.task_service.conftest import ALICE, BOB, auth, create_task, insert_tasks, tasks_url

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


async def _list(client: httpx2.AsyncClient, **params: Any) -> httpx2.Response:
    response = await client.get(tasks_url(), params=params, headers=auth())
    assert response.status_code == 200, response.text
    return response


async def _titles(client: httpx2.AsyncClient, **params: Any) -> list[str]:
    return [task["title"] for task in (await _list(client, **params)).json()]


async def test_a_user_without_tasks_gets_an_empty_list(client: httpx2.AsyncClient) -> None:
    response = await _list(client)

    assert response.json() == []
    assert response.headers["x-total-count"] == "0"


# Five tasks, inserted in this order (so ids ascend), with ties on purpose: C and D share
# created_at and due_date, B and D share priority "high", "apple" and "APPLE" share a title
# once case is ignored. Ties must fall back to the id, in the direction of the sort.
@pytest.fixture
async def sortable(client: httpx2.AsyncClient, task_app: FastAPI) -> None:
    rows = [
        ("apple", "low", 1, 5, _at(48)),
        ("Banana", "high", 2, 4, None),
        ("cherry", "medium", 3, 3, _at(24)),
        ("date", "high", 3, 1, _at(24)),
        ("APPLE", "medium", 4, 2, None),
    ]
    await insert_tasks(
        task_app,
        *(
            Task(
                user_id=ALICE,
                title=title,
                priority=priority,
                created_at=_at(created),
                updated_at=_at(updated),
                due_date=due,
            )
            for title, priority, created, updated, due in rows
        ),
    )


SORTS = [
    # (sort, order, expected titles); order None means the sort key's default.
    (None, None, ["APPLE", "date", "cherry", "Banana", "apple"]),
    ("created_at", None, ["APPLE", "date", "cherry", "Banana", "apple"]),
    ("created_at", "desc", ["APPLE", "date", "cherry", "Banana", "apple"]),
    ("created_at", "asc", ["apple", "Banana", "cherry", "date", "APPLE"]),
    ("updated_at", None, ["apple", "Banana", "cherry", "APPLE", "date"]),
    ("updated_at", "asc", ["date", "APPLE", "cherry", "Banana", "apple"]),
    ("due_date", None, ["cherry", "date", "apple", "Banana", "APPLE"]),
    ("due_date", "asc", ["cherry", "date", "apple", "Banana", "APPLE"]),
    ("due_date", "desc", ["apple", "date", "cherry", "APPLE", "Banana"]),
    ("priority", None, ["date", "Banana", "APPLE", "cherry", "apple"]),
    ("priority", "desc", ["date", "Banana", "APPLE", "cherry", "apple"]),
    ("priority", "asc", ["apple", "cherry", "APPLE", "Banana", "date"]),
    ("title", None, ["apple", "APPLE", "Banana", "cherry", "date"]),
    ("title", "asc", ["apple", "APPLE", "Banana", "cherry", "date"]),
    ("title", "desc", ["date", "cherry", "Banana", "APPLE", "apple"]),
]


@pytest.mark.usefixtures("sortable")
@pytest.mark.parametrize(("sort", "order", "expected"), SORTS)
async def test_every_sort_key_and_direction_with_ties_broken_by_id(
    client: httpx2.AsyncClient, sort: str | None, order: str | None, expected: list[str]
) -> None:
    params = {key: value for key, value in (("sort", sort), ("order", order)) if value}

    assert await _titles(client, **params) == expected


@pytest.mark.usefixtures("sortable")
@pytest.mark.parametrize(("sort", "order", "expected"), SORTS)
async def test_pages_of_one_sort_add_up_to_the_whole_list_in_order(
    client: httpx2.AsyncClient, sort: str | None, order: str | None, expected: list[str]
) -> None:
    params = {key: value for key, value in (("sort", sort), ("order", order)) if value}

    pages = [await _titles(client, limit=2, offset=offset, **params) for offset in (0, 2, 4)]

    assert pages == [expected[0:2], expected[2:4], expected[4:5]]


@pytest.fixture
async def varied(client: httpx2.AsyncClient) -> None:
    await create_task(client, title="Pay rent", priority="high", tags=["home", "money"])
    await create_task(
        client, title="Team lunch", description="Book a table", tags=["work"], completed=True
    )
    await create_task(client, title="Homework", priority="low", tags=["homework"])
    await create_task(client, title="50% discount", description="Coupon for the SHOP")
    await create_task(client, title="Rename file_name", tags=["work"], priority="high")
    await create_task(client, user_id=BOB, title="Bob's rent", tags=["home", "money"])


FILTERS = [
    ({"status": "all"}, {"Pay rent", "Team lunch", "Homework", "50% discount", "Rename file_name"}),
    ({"status": "pending"}, {"Pay rent", "Homework", "50% discount", "Rename file_name"}),
    ({"status": "completed"}, {"Team lunch"}),
    ({"priority": "high"}, {"Pay rent", "Rename file_name"}),
    ({"priority": "low"}, {"Homework"}),
    ({"priority": "medium"}, {"Team lunch", "50% discount"}),
    ({"tag": "work"}, {"Team lunch", "Rename file_name"}),
    ({"tag": "home"}, {"Pay rent"}),  # not "homework": tags match whole
    ({"tag": " money "}, {"Pay rent"}),
    ({"tag": "Work"}, set()),  # tags are case-sensitive
    ({"tag": "nothing"}, set()),
    ({"q": "rent"}, {"Pay rent"}),
    ({"q": "HOME"}, {"Homework"}),  # case-insensitive, title
    ({"q": "a table"}, {"Team lunch"}),  # description
    ({"q": "shop"}, {"50% discount"}),
    ({"q": "50%"}, {"50% discount"}),
    ({"q": "%"}, {"50% discount"}),  # a literal percent sign, not "anything"
    ({"q": "_"}, {"Rename file_name"}),  # a literal underscore, not "any one character"
    ({"q": "e_n"}, {"Rename file_name"}),
    ({"q": "\\"}, set()),
    ({"q": "   "}, {"Pay rent", "Team lunch", "Homework", "50% discount", "Rename file_name"}),
    ({"tag": ""}, {"Pay rent", "Team lunch", "Homework", "50% discount", "Rename file_name"}),
    ({"status": "pending", "priority": "high", "tag": "work"}, {"Rename file_name"}),
    ({"status": "completed", "q": "rent"}, set()),
]


@pytest.mark.usefixtures("varied")
@pytest.mark.parametrize(("params", "expected"), FILTERS)
async def test_filters_select_the_matching_tasks_of_the_caller_only(
    client: httpx2.AsyncClient, params: dict[str, str], expected: set[str]
) -> None:
    response = await _list(client, **params)

    titles = [task["title"] for task in response.json()]
    assert sorted(titles) == sorted(expected)
    assert response.headers["x-total-count"] == str(len(expected))
    assert {task["user_id"] for task in response.json()} <= {ALICE}


async def test_search_takes_a_backslash_literally(client: httpx2.AsyncClient) -> None:
    await create_task(client, title="C:\\temp")
    await create_task(client, title="C:temp")

    assert await _titles(client, q="\\") == ["C:\\temp"]
    assert await _titles(client, q=":\\t") == ["C:\\temp"]


async def test_tag_filter_finds_tags_with_spaces_and_accents(client: httpx2.AsyncClient) -> None:
    await create_task(client, title="café", tags=["à faire", "x"])
    await create_task(client, title="other", tags=["a faire"])

    assert await _titles(client, tag="à faire") == ["café"]


async def test_search_ignores_the_case_of_letters_beyond_ascii(client: httpx2.AsyncClient) -> None:
    await create_task(client, title="ÄPFEL kaufen")
    await create_task(client, title="Äpfelmus")
    await create_task(client, title="Birnen", description="Ölwechsel")
    await create_task(client, title="apfel")

    assert sorted(await _titles(client, q="äpfel")) == ["ÄPFEL kaufen", "Äpfelmus"]
    assert await _titles(client, q="ölWECHSEL") == ["Birnen"]


async def test_title_sort_ignores_the_case_of_letters_beyond_ascii(
    client: httpx2.AsyncClient,
) -> None:
    # The same word in three casings: only case folding decides, whatever the collation.
    for title in ("Öl b", "ÖL C", "öl a"):
        await create_task(client, title=title)

    assert await _titles(client, sort="title") == ["öl a", "Öl b", "ÖL C"]
    assert await _titles(client, sort="title", order="desc") == ["ÖL C", "Öl b", "öl a"]


@pytest.fixture
async def many(client: httpx2.AsyncClient, task_app: FastAPI) -> list[int]:
    """101 tasks of Alice, oldest first, and one of Bob's."""
    tasks = [Task(user_id=ALICE, title=f"task {n:03}", created_at=_at(n)) for n in range(101)]
    ids = await insert_tasks(task_app, *tasks, Task(user_id=BOB, title="bob's"))
    return ids[:101]


@pytest.mark.parametrize(
    ("params", "expected_count"),
    [
        ({}, 100),
        ({"limit": 1}, 1),
        ({"limit": 100}, 100),
        ({"offset": 100}, 1),
        ({"offset": 99, "limit": 5}, 2),
        ({"offset": 101}, 0),
        ({"offset": 5000}, 0),
        ({"offset": 2**63 - 1}, 0),
    ],
)
async def test_pages_and_the_total_count(
    client: httpx2.AsyncClient,
    many: list[int],
    params: dict[str, int],
    expected_count: int,
) -> None:
    response = await _list(client, **params)

    newest_first = list(reversed(many))
    offset = params.get("offset", 0)
    assert [task["id"] for task in response.json()] == newest_first[
        offset : offset + expected_count
    ]
    assert response.headers["x-total-count"] == "101"


async def test_total_count_follows_the_filters_on_every_page(
    client: httpx2.AsyncClient, task_app: FastAPI
) -> None:
    await insert_tasks(
        task_app,
        *(Task(user_id=ALICE, title=f"t{n}", completed=n % 3 == 0) for n in range(30)),
    )

    for offset in (0, 5, 9, 10, 50):
        response = await _list(client, status="completed", limit=5, offset=offset)
        assert response.headers["x-total-count"] == "10"
        assert all(task["completed"] for task in response.json())


@pytest.mark.parametrize(
    "params",
    [
        {"status": "done"},
        {"status": ""},
        {"priority": "urgent"},
        {"priority": "HIGH"},
        {"sort": "id"},
        {"sort": "title;drop table tasks"},
        {"order": "up"},
        {"limit": 0},
        {"limit": 101},
        {"limit": -1},
        {"limit": "ten"},
        {"offset": -1},
        {"offset": "x"},
        {"offset": 2**63},
        {"tag": "t" * 31},
        {"q": "q" * 201},
    ],
)
async def test_bad_query_parameters_are_422(
    client: httpx2.AsyncClient, params: dict[str, Any]
) -> None:
    response = await client.get(tasks_url(), params=params, headers=auth())

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    name = next(iter(params))
    assert [error["loc"] for error in response.json()["detail"]] == [["query", name]]


@pytest.mark.parametrize(
    "query", ["tag=a&tag=b", "tag=a&tag=", "limit=5&limit=5", "status=pending&status=completed"]
)
async def test_a_repeated_parameter_is_422_not_its_last_value(
    client: httpx2.AsyncClient, query: str
) -> None:
    response = await client.get(f"{tasks_url()}?{query}", headers=auth())

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    name = query.split("=", 1)[0]
    assert [error["loc"] for error in response.json()["detail"]] == [["query", name]]


async def test_a_repeated_unknown_parameter_is_ignored_like_any_unknown_one(
    client: httpx2.AsyncClient,
) -> None:
    await create_task(client, title="seen")

    response = await client.get(f"{tasks_url()}?colour=blue&colour=red", headers=auth())

    assert [task["title"] for task in response.json()] == ["seen"]


async def test_unknown_query_parameters_are_ignored(client: httpx2.AsyncClient) -> None:
    await create_task(client, title="seen")

    assert await _titles(client, colour="blue") == ["seen"]
