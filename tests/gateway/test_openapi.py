"""One OpenAPI document for both services, and real services behind the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from auth_service.app import create_app as create_auth_app
from auth_service.settings import AuthSettings
from gateway.app import create_app as create_gateway_app
from gateway.openapi import OpenAPICache, merge_openapi
from gateway.settings import GatewaySettings
from gateway.upstream import open_upstream
from task_service.app import create_app as create_task_app
from task_service.settings import TaskSettings
from tests.gateway.conftest import running_gateway
from tests.support.http_server import free_port, serve
from tests.support.tokens import SECRET_KEY, bearer


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _returning(name: str) -> dict[str, Any]:
    return {
        "get": {"responses": {"200": {"content": {"application/json": {"schema": _ref(name)}}}}}
    }


BASE: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Todo API", "version": "1"},
    "paths": {"/health": _returning("HealthResponse")},
    "components": {"schemas": {"HealthResponse": {"type": "object", "title": "gateway"}}},
}


def test_identical_components_are_kept_once() -> None:
    shared = {"type": "object", "properties": {"detail": {"type": "string"}}}
    auth = {"paths": {"/a": _returning("Error")}, "components": {"schemas": {"Error": shared}}}
    tasks = {"paths": {"/b": _returning("Error")}, "components": {"schemas": {"Error": shared}}}

    merged = merge_openapi(BASE, {"Auth": auth, "Tasks": tasks})

    assert merged["components"]["schemas"]["Error"] == shared
    assert not any(
        name.endswith("Error") and name != "Error" for name in merged["components"]["schemas"]
    )


def test_a_clashing_component_is_renamed_and_its_references_follow() -> None:
    tasks = {
        "paths": {"/b": _returning("Page")},
        "components": {
            "schemas": {
                "Page": {"type": "object", "properties": {"item": _ref("Item")}},
                "Item": {"type": "integer"},
            }
        },
    }
    auth = {
        "paths": {"/a": _returning("Item")},
        "components": {"schemas": {"Item": {"type": "string"}}},
    }

    merged = merge_openapi(BASE, {"Auth": auth, "Tasks": tasks})

    schemas = merged["components"]["schemas"]
    assert schemas["Item"] == {"type": "string"}
    assert schemas["TasksItem"] == {"type": "integer"}
    # Page refers to the renamed Item, so it differs from nothing but is rewritten in place.
    assert schemas["Page"]["properties"]["item"] == _ref("TasksItem")
    assert merged["paths"]["/a"] == _returning("Item")


def test_service_health_routes_give_way_to_the_gateways() -> None:
    service = {
        "paths": {"/health": _returning("HealthResponse"), "/health/live": {"get": {}}},
        "components": {"schemas": {"HealthResponse": {"type": "object", "title": "service"}}},
    }

    merged = merge_openapi(BASE, {"Auth": service})

    assert merged["paths"] == BASE["paths"]
    assert merged["components"]["schemas"] == BASE["components"]["schemas"]


def test_merging_leaves_its_inputs_alone() -> None:
    service = {
        "paths": {"/x": _returning("HealthResponse")},
        "components": {"schemas": {"HealthResponse": {}}},
    }
    before = repr((BASE, service))

    merge_openapi(BASE, {"Tasks": service})

    assert repr((BASE, service)) == before


def _operation(security: str | None = None, schema: str | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"responses": {"200": {"description": "OK"}}}
    if security:
        operation["security"] = [{security: []}]
    if schema:
        content = {"application/json": {"schema": _ref(schema)}}
        operation["responses"]["200"]["content"] = content
    return operation


def test_a_renamed_security_scheme_is_renamed_where_operations_require_it() -> None:
    auth = {
        "paths": {"/a": {"get": _operation(security="Bearer")}},
        "components": {"securitySchemes": {"Bearer": {"type": "http", "scheme": "bearer"}}},
    }
    tasks = {
        "paths": {"/b": {"get": _operation(security="Bearer")}},
        "components": {
            "securitySchemes": {"Bearer": {"type": "apiKey", "in": "header", "name": "X-Key"}}
        },
    }

    merged = merge_openapi(BASE, {"Auth": auth, "Tasks": tasks})

    schemes = merged["components"]["securitySchemes"]
    assert schemes["TasksBearer"] == tasks["components"]["securitySchemes"]["Bearer"]
    assert merged["paths"]["/b"]["get"]["security"] == [{"TasksBearer": []}]
    assert merged["paths"]["/a"]["get"]["security"] == [{"Bearer": []}]


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for key in ref.removeprefix("#/").split("/"):
        node = node[key]
    return node


def test_schemas_used_only_by_other_components_are_kept() -> None:
    json_schema = {"application/json": {"schema": _ref("Error")}}
    service = {
        "paths": {
            "/x": {
                "post": {
                    "parameters": [{"$ref": "#/components/parameters/Page"}],
                    "requestBody": {"$ref": "#/components/requestBodies/Input"},
                    "responses": {
                        "200": {"$ref": "#/components/responses/Listed"},
                        "404": {"$ref": "#/components/responses/NotFound"},
                    },
                }
            }
        },
        "components": {
            "schemas": {
                "Error": {"type": "object", "properties": {"code": _ref("Code")}},
                "Code": {"type": "integer"},
                "Input": {"type": "object"},
                "PageSize": {"type": "integer"},
                "Limit": {"type": "integer"},
                "Item": {"type": "string"},
                "Unused": {"type": "boolean"},
            },
            "responses": {
                "NotFound": {"description": "Not found", "content": json_schema},
                "Listed": {
                    "description": "OK",
                    "headers": {"X-Limit": {"$ref": "#/components/headers/Limit"}},
                    "content": {"application/json": {"schema": _ref("Item")}},
                },
            },
            "requestBodies": {
                "Input": {"content": {"application/json": {"schema": _ref("Input")}}}
            },
            "parameters": {"Page": {"name": "size", "in": "query", "schema": _ref("PageSize")}},
            "headers": {"Limit": {"schema": _ref("Limit")}},
        },
    }

    merged = merge_openapi(BASE, {"Tasks": service})

    for ref in _all_refs(merged):
        assert _resolve(merged, ref), ref
    assert "Unused" not in merged["components"]["schemas"]


def test_an_operation_two_services_document_keeps_the_first_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = {
        "paths": {"/x": {"get": _operation(schema="A")}},
        "components": {"schemas": {"A": {"type": "string"}}},
    }
    tasks = {
        "paths": {"/x": {"get": _operation(schema="B"), "post": _operation()}},
        "components": {"schemas": {"B": {"type": "integer"}}},
    }

    merged = merge_openapi(BASE, {"Auth": auth, "Tasks": tasks})

    assert merged["paths"]["/x"]["get"] == auth["paths"]["/x"]["get"]
    assert merged["paths"]["/x"]["post"] == tasks["paths"]["/x"]["post"]
    assert "B" not in merged["components"]["schemas"]
    assert any("GET /x" in record.getMessage() for record in caplog.records)


async def test_concurrent_readers_share_one_fetch_of_a_stalled_service() -> None:
    fetches = 0

    async def stalled(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal fetches
        fetches += 1
        while (await receive())["type"] != "http.disconnect":
            pass  # never answers

    async with serve(stalled) as url:
        upstream = open_upstream(
            "Task service", url, connect_timeout=1, timeout=1, probe_timeout=0.5
        )
        cache = OpenAPICache(BASE, {"Tasks": upstream})
        try:
            documents = await asyncio.gather(*(cache.get() for _ in range(5)))
        finally:
            await cache.aclose()
            await upstream.aclose()

    assert fetches == 1
    assert all(document["paths"] == BASE["paths"] for document in documents)


def _all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [ref for value in node.values() for ref in _all_refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _all_refs(item)]
    return []


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """The real auth and task services on SQLite, served on loopback."""
    key = SecretStr(SECRET_KEY)
    auth = create_auth_app(AuthSettings(_env_file=None, data_dir=tmp_path, secret_key=key))
    tasks = create_task_app(TaskSettings(_env_file=None, data_dir=tmp_path, secret_key=key))
    async with (
        LifespanManager(auth),
        LifespanManager(tasks),
        serve(auth) as auth_url,
        serve(tasks) as tasks_url,
    ):
        yield auth_url, tasks_url


async def test_merged_document_covers_both_services_and_every_ref_resolves(
    services: tuple[str, str],
) -> None:
    auth_url, tasks_url = services
    settings = GatewaySettings(
        _env_file=None, auth_service_url=auth_url, task_service_url=tasks_url
    )
    async with running_gateway(settings) as url, httpx2.AsyncClient(base_url=url) as client:
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
        redoc = await client.get("/redoc")

    assert spec["info"]["title"] == "Todo API"
    assert {
        "/",
        "/health",
        "/auth/register",
        "/auth/login",
        "/auth/token",
        "/auth/refresh",
        "/auth/password",
        "/auth/logout",
        "/api/users/me",
        "/api/{user_id}/tasks",
        "/api/{user_id}/tasks/{task_id}",
        "/api/{user_id}/tasks/{task_id}/complete",
    } == set(spec["paths"]) - {"/health/live"}
    schemas = spec["components"]["schemas"]
    for ref in _all_refs(spec):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    flow = spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]
    assert flow["tokenUrl"] == "/auth/token"
    assert docs.status_code == redoc.status_code == 200
    assert "/openapi.json" in docs.text


async def test_a_service_down_at_first_joins_the_document_when_it_is_up(tmp_path: Path) -> None:
    port = free_port()
    settings = GatewaySettings(
        _env_file=None,
        auth_service_url=f"http://127.0.0.1:{free_port()}",
        task_service_url=f"http://127.0.0.1:{port}",
    )
    gateway = create_gateway_app(settings)
    tasks = create_task_app(
        TaskSettings(_env_file=None, data_dir=tmp_path, secret_key=SecretStr(SECRET_KEY))
    )
    transport = httpx2.ASGITransport(app=gateway)
    async with (
        LifespanManager(gateway),
        httpx2.AsyncClient(transport=transport, base_url="http://gw") as client,
    ):
        before = (await client.get("/openapi.json")).json()
        async with LifespanManager(tasks), serve(tasks, port=port):
            after = (await client.get("/openapi.json")).json()

    assert set(before["paths"]) == {"/", "/health", "/health/live"}
    assert "/api/{user_id}/tasks" in after["paths"]


async def test_a_user_signs_up_and_keeps_tasks_through_the_gateway(
    services: tuple[str, str],
) -> None:
    auth_url, tasks_url = services
    settings = GatewaySettings(
        _env_file=None, auth_service_url=auth_url, task_service_url=tasks_url
    )
    async with running_gateway(settings) as url, httpx2.AsyncClient(base_url=url) as client:
        registered = await client.post(
            "/auth/register", json={"email": "gw@example.com", "password": "correct horse"}
        )
        auth = bearer(registered.json()["access_token"])
        user_id = registered.json()["user"]["id"]
        created = await client.post(f"/api/{user_id}/tasks", headers=auth, json={"title": "x"})
        listed = await client.get(f"/api/{user_id}/tasks", headers=auth)
        me = await client.get("/api/users/me", headers=auth)
        health = await client.get("/health")

    assert created.status_code == 201
    assert listed.headers["x-total-count"] == "1"
    assert me.json()["email"] == "gw@example.com"
    assert health.status_code == 200
    assert health.json()["services"]["tasks"]["database"] == "ok"
