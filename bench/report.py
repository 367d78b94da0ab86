"""results.md and results.json from the results of one run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.config import BENCH, is_full_run
from bench.scenario import Results, Scenario

_TREE = {True: "with uncommitted changes", False: "clean", None: "state unknown"}


def plain(value: Any) -> str:
    """A value as a reader would write it: yes/no rather than True/False."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "unknown" if value is None else str(value)


def verdict(row: dict[str, Any]) -> str:
    return "met" if row["met"] else "**not met**"


def print_targets(targets: Sequence[dict[str, Any]]) -> None:
    print("Targets", flush=True)
    for row in targets:
        mark = "met" if row["met"] else "NOT MET"
        print(f"  {mark:<8} {row['target']}: {row['measured']}{row['unit']}", flush=True)


def markdown(results: Results, scenarios: Sequence[Scenario]) -> str:
    settings, machine = results.settings, results.machine
    runs = "1 run" if settings["repeats"] == 1 else f"{settings['repeats']} runs"
    quick = [
        "A quick run, shorter than the full settings: it checks that the harness works;",
        "its figures are not for comparing.",
        "",
    ]
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `python bench/run.py --duration {settings['duration_s']}"
        f" --repeats {settings['repeats']}` on {machine['date']},",
        f"at commit `{machine['git_commit']}` (working tree {_TREE[machine['git_dirty']]}).",
        f"Every figure is the best of {runs} of {settings['duration_s']} s (configurations",
        "interleaved; errors counted over every run), load from wrk on the same machine.",
        "",
        *([] if is_full_run(settings["duration_s"], settings["repeats"]) else quick),
        "## Targets",
        "",
        "| target | measured | result |",
        "| --- | ---: | --- |",
        *[
            f"| {row['target']} | {row['measured']}{row['unit']} | {verdict(row)} |"
            for row in results.targets
        ],
        "",
        "## Machine",
        "",
        *[f"- {key}: {plain(value)}" for key, value in machine.items()],
        "",
        "## Headline",
        "",
        *[f"- `{key}`: {value}" for key, value in results.headline.items()],
        "",
    ]
    for scenario in scenarios:
        if scenario.name in results.scenarios:
            lines += scenario.section(results)
    history = BENCH / "history.md"
    if history.exists():
        lines += [history.read_text().rstrip(), ""]
    return "\n".join(lines)


def write_reports(results: Results, scenarios: Sequence[Scenario], output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(asdict(results), indent=2) + "\n")
    (output / "results.md").write_text(markdown(results, scenarios))
