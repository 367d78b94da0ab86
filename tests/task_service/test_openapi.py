"""The OpenAPI document (what /docs shows) describes every answer a route can give."""

from __future__ import annotations

from typing import Any

import pytest

from shared.tokens import MAX_SUBJECT_LENGTH
from task_service.app import create_app
from tests.support.databases import Backend
from tests.task_service.conftest import task_settings


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    backend = Backend("sqlite", None, tmp_path_factory.mktemp("openapi"))
    document: dict[str, Any] = create_app(task_settings(backend)).openapi()
    return document


def _operations(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in openapi["paths"].items()
        if path.startswith("/api/")
        for method, operation in item.items()
    ]


def test_all_eight_task_operations_are_documented(openapi: dict[str, Any]) -> None:
    assert sorted((path, method) for path, method, _ in _operations(openapi)) == [
        ("/api/{user_id}/tasks", "delete"),
        ("/api/{user_id}/tasks", "get"),
        ("/api/{user_id}/tasks", "post"),
        ("/api/{user_id}/tasks/{task_id}", "delete"),
        ("/api/{user_id}/tasks/{task_id}", "get"),
        ("/api/{user_id}/tasks/{task_id}", "patch"),
        ("/api/{user_id}/tasks/{task_id}", "put"),
        ("/api/{user_id}/tasks/{task_id}/complete", "patch"),
    ]


def test_every_status_a_route_can_answer_is_documented(openapi: dict[str, Any]) -> None:
    for path, method, operation in _operations(openapi):
        expected = {"401", "403", "422", "503"} | ({"404"} if "{task_id}" in path else set())
        documented = set(operation["responses"])
        assert expected <= documented, (method, path, expected - documented)


def test_list_parameters_and_total_header_are_described(openapi: dict[str, Any]) -> None:
    operation = openapi["paths"]["/api/{user_id}/tasks"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}

    assert set(parameters) == {
        "user_id",
        "status",
        "priority",
        "tag",
        "q",
        "sort",
        "order",
        "limit",
        "offset",
        "cursor",
    }
    assert all(p.get("description") for p in parameters.values())
    assert "soonest first" in parameters["order"]["description"]
    assert {"X-Total-Count", "X-Next-Cursor", "Link"} <= set(
        operation["responses"]["200"]["headers"]
    )


def test_partial_update_documents_which_fields_may_be_null(openapi: dict[str, Any]) -> None:
    properties = openapi["components"]["schemas"]["TaskUpdate"]["properties"]

    assert properties["title"]["type"] == "string"
    assert properties["tags"]["type"] == "array"
    assert "anyOf" not in properties["completed"]
    assert {"type": "null"} in properties["description"]["anyOf"]
    assert {"type": "null"} in properties["due_date"]["anyOf"]


def test_put_and_patch_document_the_same_partial_body(openapi: dict[str, Any]) -> None:
    item = openapi["paths"]["/api/{user_id}/tasks/{task_id}"]
    bodies = {
        method: item[method]["requestBody"]["content"]["application/json"]["schema"]
        for method in ("put", "patch")
    }

    assert bodies["put"] == {"$ref": "#/components/schemas/TaskUpdate"}
    assert bodies["put"] in bodies["patch"]["anyOf"]
    assert "keep" in item["put"]["description"]


def test_clearing_documents_its_required_status(openapi: dict[str, Any]) -> None:
    operation = openapi["paths"]["/api/{user_id}/tasks"]["delete"]
    (status,) = [p for p in operation["parameters"] if p["in"] == "query"]

    assert status["name"] == "status"
    assert status["required"] is True
    assert status["schema"]["const"] == "completed"
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/TasksDeleted"}


def test_every_operation_documents_the_user_ids_it_accepts(openapi: dict[str, Any]) -> None:
    # The service checks these lengths itself, after the token: FastAPI's own check of the
    # path parameter would come before the 401.
    for path, method, operation in _operations(openapi):
        (user_id,) = [p for p in operation["parameters"] if p["name"] == "user_id"]
        assert user_id["required"] is True, (path, method)
        assert user_id["schema"]["minLength"] == 1, (path, method)
        assert user_id["schema"]["maxLength"] == MAX_SUBJECT_LENGTH, (path, method)
