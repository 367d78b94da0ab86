"""The error catalogue: one table of codes, in the README, in OpenAPI and in every body."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from shared.errors import ApiError, ErrorCode, error_body, error_responses, install_error_handlers

README = Path(__file__).resolve().parents[2] / "README.md"
_ROW = re.compile(r"^\| `([a-z_]+)` \| (\d{3}) \| (.+) \|$", re.MULTILINE)


def test_the_readme_lists_exactly_the_catalogues_codes() -> None:
    section = README.read_text().split("### Error codes", 1)[1].split("\n### ", 1)[0]
    listed = [(code, int(status), text) for code, status, text in _ROW.findall(section)]

    expected = [(code.value, code.status, code.description) for code in ErrorCode]
    table = "\n".join(f"| `{c}` | {s} | {d} |" for c, s, d in expected)
    assert listed == expected, f"README's table of error codes should read:\n{table}"


def test_codes_are_kept_in_alphabetical_order_and_are_snake_case() -> None:
    values = [code.value for code in ErrorCode]

    assert values == sorted(values)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", value) for value in values)
    assert all(code.name == code.value.upper() for code in ErrorCode)
    assert all(400 <= code.status < 600 and code.description for code in ErrorCode)


def test_an_api_error_takes_status_and_detail_from_the_catalogue_unless_given() -> None:
    plain = ApiError(ErrorCode.EMAIL_TAKEN)
    custom = ApiError(ErrorCode.RATE_LIMITED, "slow down", status_code=503, headers={"A": "b"})

    assert (plain.status_code, plain.detail) == (409, ErrorCode.EMAIL_TAKEN.description)
    assert (custom.status_code, custom.detail, custom.headers) == (503, "slow down", {"A": "b"})
    assert error_body(ErrorCode.NOT_FOUND) == {"detail": "No such route", "code": "not_found"}


class _Body(BaseModel):
    n: int


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, database=False)

    @app.post(
        "/things",
        responses=error_responses(ErrorCode.EMAIL_TAKEN, ErrorCode.RATE_LIMITED, 401),
    )
    async def things(body: _Body) -> dict[str, int]:
        if body.n == 1:
            raise ApiError(ErrorCode.EMAIL_TAKEN, headers={"X-Why": "taken"})
        if body.n == 2:
            raise ApiError(ErrorCode.RATE_LIMITED)
        return {"n": body.n}

    return app


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/things", {"n": 1}, 409, "email_taken"),
        ("POST", "/things", {"n": 2}, 429, "rate_limited"),
        ("POST", "/things", {"n": "x"}, 422, "validation_error"),
        ("POST", "/nowhere", None, 404, "not_found"),
        ("GET", "/things", None, 405, "method_not_allowed"),
    ],
)
async def test_every_error_body_carries_its_code(
    method: str, path: str, body: object, status: int, code: str
) -> None:
    transport = httpx2.ASGITransport(app=_app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://t.test") as client:
        response = await client.request(method, path, json=body)

    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.json()["detail"]


async def test_an_api_errors_headers_reach_the_client() -> None:
    transport = httpx2.ASGITransport(app=_app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://t.test") as client:
        response = await client.post("/things", json={"n": 1})

    assert response.headers["x-why"] == "taken"


def test_openapi_names_each_routes_codes_under_their_status() -> None:
    operation = _app().openapi()["paths"]["/things"]["post"]
    responses = operation["responses"]

    assert set(responses) == {"200", "401", "409", "422", "429"}
    assert set(responses["409"]["content"]["application/json"]["examples"]) == {"email_taken"}
    assert "`rate_limited`" in responses["429"]["description"]
    # A bare status stands for its generic code.
    assert set(responses["401"]["content"]["application/json"]["examples"]) == {"not_authenticated"}
    assert responses["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }


def test_the_422_fastapi_documents_by_itself_names_its_code() -> None:
    app = FastAPI()
    install_error_handlers(app, database=False)

    @app.post("/plain")
    async def plain(body: _Body) -> None:
        return None

    schema = app.openapi()["components"]["schemas"]["HTTPValidationError"]

    assert schema["properties"]["code"]["enum"] == ["validation_error"]
