"""The benchmark harness reads wrk's report, plans and /proc correctly (no timing is asserted)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from bench.plans import plan_summary
from bench.sampling import cpu_seconds, memory_now
from bench.scenario import target
from bench.scenarios.logins import argon2_in_use, owasp_comparison
from bench.wrk import best, best_together, parse_wrk

# Output of wrk 4.1.0 (Debian), as the harness runs it.
REPORT = """\
Running 1s test @ http://127.0.0.1:18999/nope
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   786.77us  312.50us   5.52ms   76.87%
    Req/Sec     2.48k    49.45     2.55k    72.73%
  Latency Distribution
     50%  755.00us
     75%    0.93ms
     90%    1.13ms
     99%    1.57s
  2709 requests in 1.10s, 1.34MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   2462.40
Transfer/sec:      1.22MB
"""


def test_wrk_report_is_read_with_units_and_errors() -> None:
    result = parse_wrk(REPORT)

    assert result.requests_per_second == 2462.40
    assert result.requests == 2709
    assert result.p50_ms == pytest.approx(0.755)
    assert result.p90_ms == pytest.approx(1.13)
    assert result.p99_ms == pytest.approx(1570.0)
    assert result.errors == 7 + 2 + 3


def test_a_report_without_numbers_is_an_error() -> None:
    with pytest.raises(ValueError, match="wrk"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_the_least_disturbed_run_is_kept() -> None:
    slow = parse_wrk(REPORT)
    fast = parse_wrk(REPORT.replace("2462.40", "3000.00"))

    chosen = best([slow, fast])

    assert chosen.requests_per_second == 3000.00
    assert chosen.p50_ms == fast.p50_ms


def test_errors_of_every_run_are_kept() -> None:
    clean = parse_wrk(REPORT.replace("2462.40", "3000.00").replace("read 2", "read 0"))
    failing = parse_wrk(REPORT)

    assert best([clean, failing]).errors == clean.errors + failing.errors


def test_results_measured_together_are_kept_together() -> None:
    slow = parse_wrk(REPORT)
    fast = parse_wrk(REPORT.replace("2462.40", "3000.00"))
    quiet_reads = parse_wrk(REPORT.replace("2709 requests", "100 requests"))
    busy_reads = parse_wrk(REPORT.replace("2709 requests", "50 requests"))

    kept = best_together(
        [{"logins": slow, "reads": quiet_reads}, {"logins": fast, "reads": busy_reads}],
        by="logins",
    )

    assert kept["logins"].requests_per_second == 3000.00
    assert kept["reads"].requests == 50
    assert kept["reads"].errors == quiet_reads.errors + busy_reads.errors


# EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) output of PostgreSQL 15.
PLAN = """\
Limit  (cost=0.42..5.61 rows=50 width=120) (actual time=0.021..0.060 rows=50 loops=1)
  Buffers: shared hit=53
  ->  Index Scan Backward using ix_tasks_user_id_created_at_id on tasks  \
(cost=0.42..10367.42 rows=100000 width=120) (actual time=0.020..0.054 rows=50 loops=1)
        Index Cond: ((user_id)::text = 'abc'::text)
        Buffers: shared hit=53
Planning:
  Buffers: shared hit=4
Planning Time: 0.110 ms
Execution Time: 0.079 ms"""


def test_a_plan_is_summed_up_by_its_nodes_and_time() -> None:
    summary = plan_summary(PLAN)

    assert summary["nodes"] == [
        "Limit",
        "Index Scan Backward using ix_tasks_user_id_created_at_id on tasks",
    ]
    assert summary["execution_ms"] == 0.079


def test_memory_is_read_per_process_and_summed() -> None:
    memory = memory_now({"this": os.getpid(), "parent": os.getppid()})

    rss = memory["rss_mib"]
    assert rss["this"] is not None
    assert rss["parent"] is not None
    assert rss["this"] > 0
    assert rss["total"] == pytest.approx(rss["this"] + rss["parent"], abs=0.2)


def test_cpu_time_of_a_process_is_read() -> None:
    assert cpu_seconds(os.getpid()) > 0


@pytest.mark.parametrize(
    ("argon2", "label"),
    [
        ({"variant": "argon2id", "memory_kib": 19_456, "passes": 2, "lanes": 1}, "meets"),
        ({"variant": "argon2id", "memory_kib": 65_536, "passes": 3, "lanes": 4}, "stronger"),
        ({"variant": "argon2id", "memory_kib": 19_456, "passes": 3, "lanes": 1}, "stronger"),
        ({"variant": "argon2id", "memory_kib": 65_536, "passes": 1, "lanes": 1}, "below"),
        ({"variant": "argon2id", "memory_kib": 9_216, "passes": 2, "lanes": 1}, "below"),
        ({"variant": "argon2i", "memory_kib": 19_456, "passes": 2, "lanes": 1}, "below"),
    ],
)
def test_argon2_parameters_are_compared_with_owasp(argon2: dict[str, Any], label: str) -> None:
    assert owasp_comparison(argon2).startswith(label)


def test_the_auth_services_argon2_parameters_are_read_from_a_hash() -> None:
    argon2 = argon2_in_use()

    assert argon2["variant"] == "argon2id"
    assert {"memory_kib", "passes", "lanes"} <= argon2.keys()


def test_a_target_is_met_only_on_its_side_of_the_limit() -> None:
    assert target("ratio", 0.8, ">=", 0.8, "x")["met"]
    assert not target("ratio", 0.79, ">=", 0.8, "x")["met"]
    assert not target("p99", 50.0, "<", 50, " ms")["met"]
    assert target("p99", 49.9, "<", 50, " ms")["target"] == "p99 < 50 ms"
