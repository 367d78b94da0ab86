"""The benchmark's scenarios, in the order they run.

To add one: a module here with a `Scenario` (bench/scenario.py), listed below. Scenarios
share one stack on PostgreSQL, except those marked `alone`, which run after it has stopped.
"""

from __future__ import annotations

from bench.scenario import Scenario
from bench.scenarios import (
    deep_pages,
    footprint,
    gateway_cost,
    hostile,
    logins,
    proxy,
    reference,
    scale,
    writes,
)

SCENARIOS: tuple[Scenario, ...] = (
    # First, before any load has grown the processes.
    footprint.IDLE,
    gateway_cost.SCENARIO,
    reference.SCENARIO,
    proxy.SCENARIO,
    scale.SCENARIO,
    deep_pages.SCENARIO,
    writes.SCENARIO,
    footprint.UNDER_LOAD,
    # After the GET saturation, so that its memory is not what argon2 left behind.
    logins.SCENARIO,
    # Last on the shared stack: what the attackers leave behind is measured by nothing after.
    hostile.SCENARIO,
    footprint.START_UP,
)
