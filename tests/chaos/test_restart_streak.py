"""A long streak of restarts (found by a 10-minute chaos run: ~1750 kills in a row, none
with an uptime long enough to reset the backoff)."""

from __future__ import annotations

import pytest

from juicectl import RestartPolicy


@pytest.mark.parametrize("factor", [1.5, 2.0, 10.0])
def test_the_backoff_stays_at_max_delay_however_long_the_streak(factor: float) -> None:
    # factor ** attempt overflows a float after some hundreds of attempts; the controller
    # actor computing the next delay died of the OverflowError.
    policy = RestartPolicy(initial_delay=0.01, factor=factor, max_delay=0.1, jitter=0.0)
    for attempt in (0, 1, 10, 1_000, 1_751, 5_000, 10**6):
        assert 0.01 <= policy.delay(attempt) <= 0.1
    assert policy.delay(10**6) == 0.1


def test_a_zero_initial_delay_stays_zero_however_long_the_streak() -> None:
    policy = RestartPolicy(initial_delay=0.0, factor=2.0, max_delay=5.0, jitter=0.0)
    assert policy.delay(10**6) == 0.0


def test_jitter_still_applies_past_the_overflow_point() -> None:
    policy = RestartPolicy(initial_delay=0.01, factor=2.0, max_delay=1.0, jitter=0.5)
    assert policy.delay(5_000, rng=lambda: 1.0) == pytest.approx(1.5)
    assert policy.delay(5_000, rng=lambda: 0.0) == pytest.approx(0.5)
