"""Users and tasks for the benchmark: accounts through the API, tasks straight into the table."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx2
from sqlalchemy import inspect

from bench.config import PASSWORD
from task_service.models import Task

# Every column but the generated id, in the table's order: each record below follows it.
_COLUMNS = [column.name for column in inspect(Task).columns if not column.primary_key]


class SeedingError(RuntimeError):
    """The stack refused to set up what the benchmark needs."""


@dataclass
class User:
    id: str
    token: str
    email: str

    @property
    def tasks_path(self) -> str:
        return f"/api/{self.id}/tasks"


def register(base_url: str, label: str) -> User:
    """A new account, signed up through the gateway, with its access token."""
    email = f"{label}-{uuid.uuid4().hex[:8]}@bench.example.com"
    response = httpx2.post(
        f"{base_url}/auth/register", json={"email": email, "password": PASSWORD}, timeout=10
    )
    if response.status_code != 201:
        raise SeedingError(f"registering {email} failed: {response.status_code} {response.text}")
    body = response.json()
    return User(body["user"]["id"], body["access_token"], email)


async def seed_tasks(database_url: str, schema: str, user_id: str, count: int) -> None:
    """Insert `count` tasks for one user straight into the table (the triggers keep counts)."""
    now = datetime.now(UTC)
    records = [
        (
            user_id,
            f"Task number {n}",
            "seeded for the benchmark" if n % 3 else None,
            n % 2 == 0,
            ("low", "medium", "high")[n % 3],
            now + timedelta(days=n % 90) if n % 4 else None,
            json.dumps(["bench", f"group{n % 10}"]),
            now - timedelta(seconds=count - n),
            now - timedelta(seconds=count - n),
        )
        for n in range(count)
    ]
    connection = await asyncpg.connect(database_url)
    try:
        await connection.copy_records_to_table(
            "tasks", schema_name=schema, records=records, columns=_COLUMNS
        )
    finally:
        await connection.close()


async def settle(database_url: str, schema: str) -> None:
    """Leave the database as after a quiet night: statistics fresh, bulk writes flushed.

    Otherwise the background writer flushing a fresh bulk load competes with the requests
    measured right after it.
    """
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(f'VACUUM ANALYZE "{schema}".tasks')
        await connection.execute(f'VACUUM ANALYZE "{schema}".task_counts')
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()
