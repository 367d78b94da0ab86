"""Query plans of the statements the task service sends for a list.

The statements are the service's own (task_service/crud.py builds them), compiled for
asyncpg as the service's engine compiles them, so the plans cannot drift from what is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from task_service.crud import list_page_statement
from task_service.schemas import TaskListQuery

# The lists explained, by query string: each one page statement, which reads the kept total
# too where the counts give it.
EXPLAINED_QUERIES = ("limit=50", "limit=50&priority=high", "limit=50&sort=title&order=asc")


def compile_statement(statement: ClauseElement) -> tuple[str, list[Any]]:
    """The SQL asyncpg receives for a statement, and its parameters in order."""
    # The dialect's constructor has no annotations.
    compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
    assert isinstance(compiled, SQLCompiler)
    names = compiled.positiontup or []
    return str(compiled), [compiled.params[name] for name in names]


def list_statements(
    user_id: str, query_string: str, label: str | None = None
) -> dict[str, ClauseElement]:
    """The page statement of a list (which, unless the list filters by text or tag, reads
    its total too), labelled by `label` (the query string unless given)."""
    query = TaskListQuery.model_validate(dict(parse_qsl(query_string)))
    return {f"{label or query_string}: page": list_page_statement(user_id=user_id, query=query)}


async def explain_lists(
    database_url: str, schema: str, user_id: str, queries: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of the list statements for one user, in the service's schema.

    `queries` maps a label to a list's query string (default: EXPLAINED_QUERIES).
    """
    queries = queries or {query: query for query in EXPLAINED_QUERIES}
    plans: dict[str, dict[str, Any]] = {}
    # The service's engine maps its unqualified tables into its schema; so does search_path.
    connection = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        for name, query_string in queries.items():
            for label, statement in list_statements(user_id, query_string, name).items():
                sql, parameters = compile_statement(statement)
                rows = await connection.fetch(
                    f"EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) {sql}", *parameters
                )
                plan = "\n".join(row[0] for row in rows)
                plans[label] = {"sql": sql, "plan": plan, **plan_summary(plan)}
    finally:
        await connection.close()
    return plans


def plan_summary(plan: str) -> dict[str, Any]:
    """The node types of a text plan, outermost first, and its execution time in ms."""
    nodes = [
        line.strip().removeprefix("->").strip().split("  (")[0]
        for line in plan.splitlines()
        if "(cost=" in line
    ]
    match = re.search(r"^Execution Time: ([\d.]+) ms", plan, re.MULTILINE)
    return {"nodes": nodes, "execution_ms": float(match.group(1)) if match else None}


def plans_section(plans: dict[str, dict[str, Any]], size: int) -> list[str]:
    """The report's section on the plans."""
    lines = [
        f"Query plans at {size:,} tasks: `EXPLAIN (ANALYZE, BUFFERS)` of the statements the",
        "task service sends for these lists (`list_page_statement` in `task_service/crud.py`,",
        "whose page reads the kept total too), compiled for asyncpg and run after the",
        "measurements above. These are",
        "plans for the values given; a statement the service has prepared many times may use",
        "PostgreSQL's generic plan instead.",
        "",
        "| statement | plan nodes, outermost first | execution ms |",
        "| --- | --- | ---: |",
        *[
            f"| {label} | {' > '.join(plan['nodes'])} | {plan['execution_ms']:.3f} |"
            for label, plan in plans.items()
        ],
        "",
        "<details><summary>Full plans</summary>",
        "",
    ]
    for label, plan in plans.items():
        lines += [f"{label}:", "", "```sql", plan["sql"], "```", "", "```text", plan["plan"]]
        lines += ["```", ""]
    return [*lines, "</details>", ""]
