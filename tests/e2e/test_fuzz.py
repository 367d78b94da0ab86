"""Property-based fuzzing of the whole API, from the gateway's merged OpenAPI document, on
the live stack and signed in.

Bounded for CI (FUZZ_MAX_EXAMPLES per operation, 25 by default). A longer run:
    FUZZ_MAX_EXAMPLES=1000 scripts/test tests/e2e/test_fuzz.py
or, against any running stack, the schemathesis CLI (see README).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err

from tests.e2e.conftest import Stack, drop_stack_schemas, start_stack
from tests.support.databases import unique_schema

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    allow_header_conformance,
]

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class SignedIn:
    stack: Stack
    token: str
    user_id: str


@pytest.fixture(scope="module")
def signed_in(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedIn]:
    stack = start_stack(
        tmp_path_factory.mktemp("fuzz"),
        DATABASE_URL=postgres_url,
        AUTH_DB_SCHEMA=unique_schema("auth"),
        TASK_DB_SCHEMA=unique_schema("tasks"),
        # The fuzzer is one client hammering sign-in; the limits are tested elsewhere.
        AUTH_RATE_LIMIT="1000000/minute",
        LOGIN_FAILURE_LIMIT="1000000/minute",
    )
    try:
        stack.wait_healthy()
        registered = httpx2.post(
            f"{stack.base_url}/auth/register",
            json={"email": "fuzz@example.com", "password": "correct horse"},
            timeout=10,
        ).json()
        yield SignedIn(stack, registered["access_token"], registered["user"]["id"])
    finally:
        stack.stop()
        drop_stack_schemas(postgres_url, stack)


@pytest.fixture(scope="module")
def api_schema(signed_in: SignedIn) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{signed_in.stack.base_url}/openapi.json")


Operation = schemathesis.APIOperation[Any, Any, Any, Any]


def _fuzz(operation: Operation, signed_in: SignedIn) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case[Operation]) -> None:
        # The signed-in user's own path, so requests get past the ownership check.
        if case.path_parameters and "user_id" in case.path_parameters:
            case.path_parameters["user_id"] = signed_in.user_id
        case.call_and_validate(
            headers={"Authorization": f"Bearer {signed_in.token}"}, checks=CHECKS
        )

    run()


def test_every_operation_answers_within_its_contract(
    api_schema: schemathesis.BaseSchema, signed_in: SignedIn
) -> None:
    failures: dict[str, Exception] = {}
    operations = 0
    for result in api_schema.get_all_operations():
        if isinstance(result, Err):
            failures[f"schema: {result.err()}"] = result.err()
            continue
        operation = result.ok()
        operations += 1
        try:
            _fuzz(operation, signed_in)
        except Exception as exc:  # report every failing operation, not only the first
            failures[operation.label] = exc
    assert operations >= 13, "the merged document lost operations"
    assert not failures, "\n\n".join(f"{label}:\n{exc}" for label, exc in failures.items())
