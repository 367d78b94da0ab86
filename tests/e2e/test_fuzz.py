"""Property-based fuzzing of the whole API, from the gateway's merged OpenAPI document, on
the live stack and signed in.

Every operation gets valid requests (positive mode: they must be answered within the
documented contract) and invalid ones (negative mode: they must be refused with a
documented 4xx, never a 5xx). Valid requests reach real data: task ids are those of tasks
the user owns, and refresh, logout and login get working credentials every other time.

Bounded for CI (FUZZ_MAX_EXAMPLES per operation and mode, 25 by default). A longer run:
    FUZZ_MAX_EXAMPLES=1000 scripts/test tests/e2e/test_fuzz.py
or, against any running stack, `scripts/fuzz` (see README).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err
from schemathesis.generation import GenerationMode

from shared.tokens import MAX_SUBJECT_LENGTH
from tests.e2e.conftest import Stack, postgres_stack

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
CONTRACT_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    allow_header_conformance,
]
CHECKS = {
    GenerationMode.POSITIVE: CONTRACT_CHECKS,
    GenerationMode.NEGATIVE: [*CONTRACT_CHECKS, negative_data_rejection],
}
EMAIL = "fuzz@example.com"
PASSWORD = "correct horse"
SEEDED_TASKS = 20

pytestmark = pytest.mark.postgres


@dataclass
class SignedIn:
    stack: Stack
    token: str
    user_id: str
    task_ids: list[int]
    turns: Iterator[int] = field(default_factory=itertools.count)

    def refresh_token(self) -> str:
        """A working refresh token of a new sign-in (refresh and logout use theirs up)."""
        response = httpx2.post(
            f"{self.stack.base_url}/auth/login",
            json={"email": EMAIL, "password": PASSWORD},
            timeout=10,
        )
        response.raise_for_status()
        token: str = response.json()["refresh_token"]
        return token


@pytest.fixture(scope="module")
def signed_in(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedIn]:
    with postgres_stack(
        postgres_url,
        tmp_path_factory.mktemp("fuzz"),
        # The fuzzer is one client hammering sign-in; the limits are tested elsewhere.
        AUTH_RATE_LIMIT="1000000/minute",
        LOGIN_FAILURE_LIMIT="1000000/minute",
    ) as stack:
        with stack.client() as client:
            registered = client.post(
                "/auth/register", json={"email": EMAIL, "password": PASSWORD}
            ).json()
            user_id = registered["user"]["id"]
            headers = {"Authorization": f"Bearer {registered['access_token']}"}
            task_ids = [
                client.post(
                    f"/api/{user_id}/tasks", json={"title": f"task {n}"}, headers=headers
                ).json()["id"]
                for n in range(SEEDED_TASKS)
            ]
        yield SignedIn(stack, registered["access_token"], user_id, task_ids)


@pytest.fixture(scope="module")
def api_schema(signed_in: SignedIn) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{signed_in.stack.base_url}/openapi.json")


Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Operation]


def _reach_real_data(case: Case, signed_in: SignedIn) -> None:
    """Point a valid request at the user's own data, so it gets past 403 and 404."""
    path = case.path_parameters or {}
    if "user_id" in path:
        path["user_id"] = signed_in.user_id
    if isinstance(path.get("task_id"), int):
        path["task_id"] = signed_in.task_ids[path["task_id"] % len(signed_in.task_ids)]
    # Every other sign-in request carries credentials that work.
    if not isinstance(case.body, dict) or next(signed_in.turns) % 2:
        return
    if "refresh_token" in case.body:
        case.body["refresh_token"] = signed_in.refresh_token()
    elif "password" in case.body:
        case.body["password"] = PASSWORD
        case.body["username" if "username" in case.body else "email"] = EMAIL


def _is_valid_user_id(value: object) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= MAX_SUBJECT_LENGTH


def _fuzz(operation: Operation, mode: GenerationMode, signed_in: SignedIn) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case) -> None:
        if mode is GenerationMode.POSITIVE:
            _reach_real_data(case, signed_in)
        elif _is_valid_user_id((case.path_parameters or {}).get("user_id")):
            # Where the invalid part is elsewhere, another user's id would only ever meet
            # the ownership check's 403; an invalid user id itself is left for the API.
            assert case.path_parameters is not None
            case.path_parameters["user_id"] = signed_in.user_id
        case.call_and_validate(
            headers={"Authorization": f"Bearer {signed_in.token}"}, checks=CHECKS[mode]
        )

    run()


def _fuzz_every_operation(
    api_schema: schemathesis.BaseSchema, mode: GenerationMode, signed_in: SignedIn
) -> int:
    """Fuzz each operation; return how many had requests to make in this mode."""
    failures: dict[str, Exception] = {}
    fuzzed = 0
    for result in api_schema.get_all_operations():
        if isinstance(result, Err):
            failures[f"schema: {result.err()}"] = result.err()
            continue
        operation = result.ok()
        try:
            _fuzz(operation, mode, signed_in)
            fuzzed += 1
        except Unsatisfiable:
            # An operation that takes no input has no invalid request to make.
            assert mode is GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # report every failing operation, not only the first
            failures[operation.label] = exc
    assert not failures, "\n\n".join(f"{label}:\n{exc}" for label, exc in failures.items())
    return fuzzed


def test_valid_requests_are_answered_within_the_contract(
    api_schema: schemathesis.BaseSchema, signed_in: SignedIn
) -> None:
    fuzzed = _fuzz_every_operation(api_schema, GenerationMode.POSITIVE, signed_in)
    assert fuzzed >= 13, "the merged document lost operations"


def test_invalid_requests_are_refused_with_a_documented_4xx(
    api_schema: schemathesis.BaseSchema, signed_in: SignedIn
) -> None:
    # Every operation but /, /health, /health/live and /api/users/me takes input.
    fuzzed = _fuzz_every_operation(api_schema, GenerationMode.NEGATIVE, signed_in)
    assert fuzzed >= 9, "too few operations took invalid input"
