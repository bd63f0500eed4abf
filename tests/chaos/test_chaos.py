"""Chaos: requests under load while the child is SIGKILLed at random; nothing lost, crossed
or leaked.

The short runs take a few seconds each and run in the suite. The long run is on demand::

    .venv/bin/python -m pytest -m slow tests/chaos -s     # JUICECTL_CHAOS_SECONDS=60 default
    .venv/bin/python benchmarks/chaos.py --duration 300
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.chaos.engine import BAD_EVENTS, ChaosReport, describe_failure, run_chaos


def check(report: ChaosReport, logs: list[MutableMapping[str, Any]]) -> None:
    assert report.ok, describe_failure(report)
    assert report.sent > 0 and report.answered > 0, describe_failure(report)
    assert report.kills >= 1, describe_failure(report)
    bad = [entry for entry in logs if entry["event"] in BAD_EVENTS]
    assert not bad, bad[:5]


def test_chaos_short() -> None:
    with capture_logs() as logs:
        report = run_chaos(duration=3.0, callers=6, kill_interval=(0.1, 0.5), seed=None)
    print("\n".join(report.lines()))
    check(report, logs)


def test_chaos_close_while_callers_and_killer_are_at_work() -> None:
    with capture_logs() as logs:
        report = run_chaos(
            duration=1.5, callers=6, kill_interval=(0.05, 0.3), close_under_fire=True
        )
    print("\n".join(report.lines()))
    check(report, logs)


@pytest.mark.slow
@pytest.mark.timeout(0)
def test_chaos_long() -> None:
    seconds = float(os.environ.get("JUICECTL_CHAOS_SECONDS", "60"))
    callers = int(os.environ.get("JUICECTL_CHAOS_CALLERS", "16"))
    with capture_logs() as logs:
        report = run_chaos(duration=seconds, callers=callers, kill_interval=(0.05, 0.5))
    print("\n" + "\n".join(report.lines()))
    check(report, logs)
