"""The benchmark's plans come from the service's statements, and its report renders."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import httpx2

from bench.plans import compile_statement, list_statements
from bench.report import markdown
from bench.scenario import Results, Scenario, target, wrk_table
from bench.scenarios import SCENARIOS
from bench.scenarios.deep_pages import next_cursor
from bench.scenarios.proxy import collections_in, static_body
from shared.metrics import render_metrics

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_list_statements_are_the_services_own_compiled_for_asyncpg() -> None:
    statements = list_statements("user-1", "limit=50&priority=high")

    assert list(statements) == ["limit=50&priority=high: page"]
    sql, parameters = compile_statement(statements["limit=50&priority=high: page"])
    assert sql.startswith("SELECT tasks.id")
    assert "FROM tasks" in sql
    # The kept total is read in the same statement.
    assert "FROM task_counts" in sql
    assert "ORDER BY tasks.created_at DESC, tasks.id DESC" in sql
    # The total's 0 for a user with no tasks, then the user and the filter (both parts),
    # the page's limit and offset.
    assert parameters == [0, "user-1", "high", 50, 0]


def test_a_list_filtered_by_tag_reads_no_kept_total_in_its_page() -> None:
    statements = list_statements("user-1", "limit=50&tag=home&sort=title&order=asc")

    sql, _ = compile_statement(statements["limit=50&tag=home&sort=title&order=asc: page"])
    assert "task_counts" not in sql
    assert "ORDER BY lower(tasks.title) ASC, tasks.id ASC" in sql


def test_the_report_shows_targets_machine_and_each_scenarios_section() -> None:
    row = {"requests_per_second": 1234.0, "p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.5, "errors": 0}
    results = Results(
        machine={"cpu": "a CPU", "git_commit": "abc123", "git_dirty": False, "date": "today"},
        settings={"duration_s": 1, "repeats": 1},
        targets=[target("speed", 1234.0, ">=", 2000, " req/s")],
        scenarios={"demo": {"wrk": {"a point": row}}},
    )
    demo = Scenario(
        "demo",
        measure=lambda run: {},
        section=lambda results: [
            "## Demo",
            "",
            *wrk_table("point", results.scenarios["demo"]["wrk"]),
        ],
    )

    text = markdown(results, [demo])

    assert "| speed >= 2000 req/s | 1234.0 req/s | **not met** |" in text
    assert "at commit `abc123` (working tree clean)" in text
    assert "- cpu: a CPU" in text
    assert "| a point | 1234 | 1.00 | 2.00 | 3.50 | 0 |" in text
    assert "A quick run" in text


def test_scenario_names_are_unique() -> None:
    names = [scenario.name for scenario in SCENARIOS]

    assert len(names) == len(set(names))


def test_no_module_of_the_harness_is_long() -> None:
    lengths = {
        path.relative_to(BENCH).as_posix(): len(path.read_text().splitlines())
        for path in BENCH.rglob("*.py")
        if ".work" not in path.parts
    }

    assert lengths
    assert {name: n for name, n in lengths.items() if n > 300} == {}


def test_the_next_pages_cursor_is_read_from_either_header() -> None:
    assert next_cursor(httpx2.Headers({"X-Next-Cursor": "abc"})) == "abc"
    link = '</api/u/tasks?limit=50&cursor=xyz%3D>; rel="next", </api/u/tasks>; rel="first"'
    assert next_cursor(httpx2.Headers({"Link": link})) == "xyz="
    assert next_cursor(httpx2.Headers({"Link": '</api/u/tasks>; rel="prev"'})) is None
    assert next_cursor(httpx2.Headers()) is None


def test_the_static_upstream_answers_2_kib_of_json() -> None:
    body = static_body()

    assert len(body) == 2048
    assert isinstance(json.loads(body), list)


def test_garbage_collections_are_read_from_a_process_metrics() -> None:
    before = collections_in(render_metrics()[0].decode())
    gc.collect()
    after = collections_in(render_metrics()[0].decode())

    assert set(before) == {"0", "1", "2"}
    assert after["2"] >= before["2"] + 1
