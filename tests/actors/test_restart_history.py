"""The restart bookkeeping as a pure unit: the window, the streak, the reset, giving up.

``RestartHistory`` keeps no clock: every call says what time it is, so these tests are the
fake clock. Jitter is 0 unless a test says otherwise, so delays are exact.
"""

from __future__ import annotations

from typing import Any

import pytest

from juicectl.policy import Backoff, GiveUp, RestartHistory, RestartPolicy


def history(**kw: Any) -> RestartHistory:
    kw.setdefault("initial_delay", 1.0)
    kw.setdefault("factor", 2.0)
    kw.setdefault("max_delay", 100.0)
    kw.setdefault("jitter", 0.0)
    return RestartHistory(RestartPolicy(**kw))


def crash(h: RestartHistory, now: float, uptime: float | None = 1.0) -> Backoff | GiveUp | None:
    """An abnormal exit at ``now`` of a child that was up ``uptime`` seconds."""
    return h.decide(abnormal=True, uptime=uptime, now=now)


def test_a_fresh_history_counts_nothing() -> None:
    h = history()
    assert (h.in_window, h.streak, h.total) == (0, 0, 0)


@pytest.mark.parametrize(
    ("mode", "abnormal", "restarts"),
    [
        ("permanent", False, True),
        ("permanent", True, True),
        ("transient", False, False),
        ("transient", True, True),
        ("temporary", False, False),
        ("temporary", True, False),
    ],
)
def test_which_exits_are_restarted(mode: str, abnormal: bool, restarts: bool) -> None:
    h = history(mode=mode)
    decision = h.decide(abnormal=abnormal, uptime=None, now=0.0)
    assert decision == (Backoff(1.0, 1, 0) if restarts else None)
    # An exit that is not restarted changes nothing.
    assert h.streak == (1 if restarts else 0)


def test_the_backoff_grows_by_the_factor_up_to_max_delay() -> None:
    h = history(initial_delay=1.0, factor=3.0, max_delay=20.0, max_restarts=10)
    delays = []
    for now in range(5):
        decision = crash(h, float(now), uptime=None)
        assert isinstance(decision, Backoff)
        delays.append((decision.delay, decision.attempt))
        h.restarted(float(now))
    assert delays == [(1.0, 1), (3.0, 2), (9.0, 3), (20.0, 4), (20.0, 5)]
    assert (h.streak, h.total, h.in_window) == (5, 5, 5)


def test_jitter_comes_from_the_rng() -> None:
    policy = RestartPolicy(initial_delay=10.0, jitter=0.5)
    low = RestartHistory(policy, rng=lambda: 0.0).decide(abnormal=True, uptime=None, now=0)
    high = RestartHistory(policy, rng=lambda: 1.0).decide(abnormal=True, uptime=None, now=0)
    assert low == Backoff(5.0, 1, 0)
    assert high == Backoff(15.0, 1, 0)


@pytest.mark.parametrize(
    ("uptime", "resets"),
    [(None, False), (0.0, False), (29.999, False), (30.0, True), (31.0, True)],
)
def test_an_uptime_of_at_least_reset_after_starts_the_streak_afresh(
    uptime: float | None, resets: bool
) -> None:
    h = history(reset_after=30.0, max_restarts=10)
    for now in (0.0, 1.0):
        crash(h, now, uptime=None)
        h.restarted(now)
    decision = crash(h, 10.0, uptime=uptime)
    assert decision == (Backoff(1.0, 1, 2) if resets else Backoff(4.0, 3, 2))
    assert h.streak == (1 if resets else 3)


def test_the_reset_after_an_uptime_does_not_empty_the_window() -> None:
    h = history(reset_after=5.0, max_restarts=2, window=60.0)
    for now in (0.0, 1.0):
        crash(h, now)
        h.restarted(now)
    # Up long enough to reset the backoff, but both restarts are within the window.
    assert crash(h, 10.0, uptime=9.0) == GiveUp(2)


@pytest.mark.parametrize(
    ("since", "counted"),
    [(9.0, True), (10.0, True), (10.001, False), (50.0, False)],
)
def test_a_restart_exactly_window_seconds_ago_still_counts(since: float, counted: bool) -> None:
    h = history(max_restarts=1, window=10.0)
    crash(h, 100.0)
    h.restarted(100.0)
    decision = crash(h, 100.0 + since)
    if counted:
        assert decision == GiveUp(1)
        assert h.in_window == 1
    else:
        assert decision == Backoff(2.0, 2, 0)
        assert h.in_window == 0


def test_only_restarts_older_than_the_window_drop_out() -> None:
    h = history(max_restarts=3, window=10.0)
    for now in (0.0, 4.0, 8.0):
        crash(h, now)
        h.restarted(now)
    assert h.in_window == 3
    decision = crash(h, 13.5)  # 0.0 is out, 4.0 and 8.0 are in
    assert isinstance(decision, Backoff) and decision.restarts_in_window == 2
    assert h.in_window == 2


def test_giving_up_schedules_nothing_and_leaves_the_streak() -> None:
    h = history(max_restarts=2)
    for now in (0.0, 1.0):
        crash(h, now)
        h.restarted(now)
    assert crash(h, 2.0) == GiveUp(2)
    assert (h.streak, h.total, h.in_window) == (2, 2, 2)
    # Asking again gives the same answer: nothing was counted for the refusal.
    assert crash(h, 3.0) == GiveUp(2)


def test_max_restarts_zero_gives_up_at_once() -> None:
    assert crash(history(max_restarts=0), 0.0) == GiveUp(0)


def test_a_decision_counts_no_restart_until_one_launches() -> None:
    h = history(max_restarts=1)
    assert crash(h, 0.0) == Backoff(1.0, 1, 0)
    # The restart was cancelled (a stop came during the backoff): still nothing in the window.
    assert crash(h, 1.0) == Backoff(2.0, 2, 0)
    assert (h.total, h.in_window) == (0, 0)


def test_reset_empties_the_window_and_the_streak_but_keeps_the_total() -> None:
    h = history(max_restarts=2)
    for now in (0.0, 1.0):
        crash(h, now)
        h.restarted(now)
    assert crash(h, 2.0) == GiveUp(2)
    h.reset()
    assert (h.streak, h.in_window, h.total) == (0, 0, 2)
    assert crash(h, 3.0) == Backoff(1.0, 1, 0)
