"""The restart policy: which exits restart, backoff, the intensity limit, stops during backoff.

Delays are tiny (or, where the test must act during a backoff, long enough never to fire);
timings are checked only from below, and the delays themselves through the log lines.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from controller_harness import WAIT, FakeConnection, Harness, ManualClock, into, outcome

from juicectl.exceptions import ControllerClosed, ProcessUnavailable
from juicectl.messages import GaveUp, ProcessTerminated, StopResult

MakeHarness = Callable[..., Harness]


def policy(mode: str = "permanent", **kw: Any) -> Any:
    from juicectl.policy import RestartPolicy

    kw.setdefault("initial_delay", 0.001)
    kw.setdefault("jitter", 0.0)
    return RestartPolicy(mode=mode, **kw)  # type: ignore[arg-type]


NEVER = 600.0
"""A backoff that will not fire during a test."""


def crash(h: Harness, **reason: Any) -> None:
    """The current child dies on its own (default: exit status 1)."""
    reason.setdefault("how", "exited")
    h.terminated(**reason)
    h.sync()


def run_until_ready(h: Harness, launches: int) -> None:
    h.factory.wait_for_launches(launches)
    assert h.sync() == "starting"
    h.created()
    assert h.sync() == "ready"


@pytest.mark.parametrize(
    ("mode", "exit_status", "restarts"),
    [
        ("permanent", 0, True),
        ("permanent", 1, True),
        ("transient", 0, False),
        ("transient", 1, True),
        ("temporary", 0, False),
        ("temporary", 1, False),
    ],
)
def test_which_exits_restart(
    make_harness: MakeHarness, mode: str, exit_status: int, restarts: bool
) -> None:
    h = make_harness(policy=policy(mode))
    h.get()
    run_until_ready(h, 1)
    with structlog.testing.capture_logs() as logs:
        crash(h, exit_status=exit_status)
    scheduled = [e for e in logs if e["event"] == "restart_scheduled"]
    if restarts:
        assert len(scheduled) == 1
        run_until_ready(h, 2)
        assert h.stats()["restarts"] == 1
        assert h.on_startup.calls == 2
    else:
        assert scheduled == []
        assert h.stats()["restart_pending"] is False
        assert h.sync() == "stopped"
    assert h.on_termination.calls == 1


@pytest.mark.parametrize("mode", ["permanent", "transient"])
def test_a_killed_child_restarts(make_harness: MakeHarness, mode: str) -> None:
    h = make_harness(policy=policy(mode))
    h.get()
    run_until_ready(h, 1)
    crash(h, how="killed", signal=9)
    run_until_ready(h, 2)


@pytest.mark.parametrize("mode", ["permanent", "transient"])
def test_a_failed_start_counts_as_abnormal(make_harness: MakeHarness, mode: str) -> None:
    h = make_harness(policy=policy(mode))
    waiter = h.get()
    h.sync()
    # Exit status 0, but it never became ready: a failed start, so "transient" restarts too.
    crash(h, exit_status=0)
    assert isinstance(outcome(waiter), ProcessUnavailable)
    run_until_ready(h, 2)


@pytest.mark.parametrize("mode", ["permanent", "transient"])
def test_a_requested_stop_never_restarts(make_harness: MakeHarness, mode: str) -> None:
    h = make_harness(policy=policy(mode))
    h.get()
    run_until_ready(h, 1)
    stopper = h.stop()
    h.terminated(how="killed", signal=9, requested=True)
    assert stopper.get(timeout=WAIT).how == "killed"
    stats = h.stats()
    assert (stats["mode"], stats["restart_pending"], stats["restarts"]) == ("stopped", False, 0)


def test_backoff_grows_by_the_factor_up_to_the_maximum(make_harness: MakeHarness) -> None:
    h = make_harness(policy=policy(initial_delay=0.01, factor=2.0, max_delay=0.04))
    h.get()
    with structlog.testing.capture_logs() as logs:
        for attempt in range(4):
            h.factory.wait_for_launches(attempt + 1)
            h.sync()
            crash(h)  # fails to start, every time
        h.factory.wait_for_launches(5)
    scheduled = [e for e in logs if e["event"] == "restart_scheduled"]
    delays = [e["delay"] for e in scheduled]
    assert delays == pytest.approx([0.01, 0.02, 0.04, 0.04])
    assert [e["attempt"] for e in scheduled] == [1, 2, 3, 4]
    # The timer never fires early. Only a lower bound: no assertion on speed.
    launches = h.factory.launches
    for (before, after), delay in zip(itertools.pairwise(launches), delays, strict=True):
        assert after.at - before.at >= delay * 0.9


def test_jitter_stays_within_its_fraction(make_harness: MakeHarness) -> None:
    h = make_harness(policy=policy(initial_delay=0.01, jitter=0.5, factor=1.0))
    h.get()
    with structlog.testing.capture_logs() as logs:
        for attempt in range(5):
            h.factory.wait_for_launches(attempt + 1)
            h.sync()
            crash(h)
        h.factory.wait_for_launches(6)
    delays = [e["delay"] for e in logs if e["event"] == "restart_scheduled"]
    assert len(delays) == 5
    assert all(0.005 <= d <= 0.015 for d in delays)


def test_the_intensity_limit_gives_up_until_the_next_get_process(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(policy=policy(max_restarts=2, window=60.0))
    h.get()
    run_until_ready(h, 1)
    crash(h)  # restart 1
    run_until_ready(h, 2)
    crash(h)  # restart 2
    run_until_ready(h, 3)
    with structlog.testing.capture_logs() as logs:
        crash(h, how="killed", signal=9)  # a third would pass the limit
    gave_up = [e for e in logs if e["event"] == "gave_up"]
    assert len(gave_up) == 1 and gave_up[0]["restarts"] == 2
    assert gave_up[0]["log_level"] == "warning"
    events = h.events(GaveUp)
    assert len(events) == 1
    assert (events[0].controller, events[0].restarts, events[0].window) == ("test", 2, 60.0)
    assert events[0].last.signal == 9
    stats = h.stats()
    assert (stats["mode"], stats["gave_up"], stats["restart_pending"]) == ("stopped", True, False)
    assert stats["restarts"] == 2 and len(h.factory.launches) == 3
    # Termination events are still told for every crash.
    assert len(h.events(ProcessTerminated)) == 3

    # A caller asks again: launch at once, and count afresh.
    waiter = h.get()
    run_until_ready(h, 4)
    assert outcome(waiter) == FakeConnection(4)
    stats = h.stats()
    assert (stats["gave_up"], stats["restarts_in_window"]) == (False, 0)
    crash(h)
    run_until_ready(h, 5)  # restarts again: the count was reset


def test_max_restarts_zero_gives_up_at_once(make_harness: MakeHarness) -> None:
    h = make_harness(policy=policy(max_restarts=0))
    h.get()
    run_until_ready(h, 1)
    crash(h)
    assert len(h.events(GaveUp)) == 1
    assert h.stats()["restart_pending"] is False


def test_restarts_older_than_the_window_do_not_count(make_harness: MakeHarness) -> None:
    clock = ManualClock()
    h = make_harness(policy=policy(max_restarts=1, window=10.0), clock=clock)
    h.get()
    run_until_ready(h, 1)
    crash(h)
    run_until_ready(h, 2)
    clock.advance(11.0)
    crash(h)
    run_until_ready(h, 3)  # the first restart fell out of the window
    crash(h)  # the second is still in it
    assert len(h.events(GaveUp)) == 1


def test_a_child_that_stayed_up_resets_the_backoff(make_harness: MakeHarness) -> None:
    clock = ManualClock()
    h = make_harness(
        policy=policy(initial_delay=0.001, factor=10.0, reset_after=5.0, max_restarts=10),
        clock=clock,
    )
    h.get()
    with structlog.testing.capture_logs() as logs:
        for launches in (1, 2):  # two failed starts: the delay grows
            h.factory.wait_for_launches(launches)
            h.sync()
            crash(h)
        run_until_ready(h, 3)
        clock.advance(4.0)  # up, but not long enough
        crash(h)
        run_until_ready(h, 4)
        clock.advance(6.0)  # up long enough: the next restart starts the streak afresh
        crash(h)
        h.factory.wait_for_launches(5)
    delays = [e["delay"] for e in logs if e["event"] == "restart_scheduled"]
    assert delays == pytest.approx([0.001, 0.01, 0.1, 0.001])


def test_get_process_during_a_backoff_waits_for_the_restart(make_harness: MakeHarness) -> None:
    h = make_harness(policy=policy(initial_delay=0.05))
    h.get()
    run_until_ready(h, 1)
    crash(h)
    waiters = [h.get(), h.get()]  # queued: no second launch while one is pending
    h.factory.wait_for_launches(2)
    h.sync()
    assert all(outcome(w) == "pending" for w in waiters)
    h.created()
    assert h.sync() == "ready"
    assert [outcome(w) for w in waiters] == [FakeConnection(2)] * 2
    assert len(h.factory.launches) == 2


def test_during_a_backoff_the_mode_stays_stopped(make_harness: MakeHarness) -> None:
    h = make_harness(policy=policy(initial_delay=NEVER))
    h.get()
    run_until_ready(h, 1)
    crash(h)
    waiter = h.get()
    stats = h.stats()
    assert (stats["mode"], stats["restart_pending"], stats["waiting"]) == ("stopped", True, 1)
    assert outcome(waiter) == "pending"
    assert len(h.factory.launches) == 1


def test_stop_during_a_backoff_cancels_the_restart(make_harness: MakeHarness) -> None:
    h = make_harness(policy=policy(initial_delay=NEVER))
    h.get()
    run_until_ready(h, 1)
    crash(h)
    waiter = h.get()
    with structlog.testing.capture_logs() as logs:
        stopper = h.stop()
        assert h.sync() == "stopped"
    assert outcome(stopper) == StopResult("not_running")
    failure = outcome(waiter)
    assert type(failure) is ProcessUnavailable and "cancelled" in str(failure)
    assert h.stats()["restart_pending"] is False
    assert "restart_cancelled" in [e["event"] for e in logs]
    # And get_process launches again right away.
    h.get()
    h.factory.wait_for_launches(2)


def test_a_cancelled_timer_that_fires_anyway_is_ignored(make_harness: MakeHarness) -> None:
    from juicectl.messages import _RestartDue

    h = make_harness(policy=policy(initial_delay=NEVER))
    h.get()
    run_until_ready(h, 1)
    crash(h)
    h.stop()
    h.sync()
    for token in range(5):
        h.ref.tell(_RestartDue(token))
    assert h.sync() == "stopped"
    assert len(h.factory.launches) == 1


def test_close_during_a_backoff(make_harness: MakeHarness) -> None:
    h = make_harness(policy=policy(initial_delay=NEVER))
    h.get()
    run_until_ready(h, 1)
    crash(h)
    waiter = h.get()
    assert h.close().get(timeout=WAIT) == StopResult("not_running")
    assert isinstance(outcome(waiter), ControllerClosed)
    assert h.ref.actor_stopped.wait(WAIT)


def test_waiters_from_a_backoff_fail_when_the_restart_fails_and_the_policy_gives_up(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(policy=policy(initial_delay=0.05, max_restarts=1))
    h.get()
    run_until_ready(h, 1)
    crash(h)
    waiter = h.get()
    h.factory.wait_for_launches(2)
    h.sync()
    crash(h, stderr_tail=("boom",))  # the restarted child dies before it is ready
    failure = outcome(waiter)
    assert isinstance(failure, ProcessUnavailable) and failure.stderr_tail == ("boom",)
    assert len(h.events(GaveUp)) == 1
    assert h.stats()["restart_pending"] is False


def test_waiters_from_a_backoff_wait_through_a_failed_restart_for_the_next_one(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(policy=policy(initial_delay=0.05, max_restarts=5))
    h.get()
    run_until_ready(h, 1)
    crash(h)
    waiter = h.get()  # during the backoff: waits for the restart
    h.factory.wait_for_launches(2)
    h.sync()
    crash(h)  # the restarted child dies before it is ready; the policy restarts again
    assert outcome(waiter) == "pending"
    h.factory.wait_for_launches(3)
    assert h.sync() == "starting"
    h.created()
    assert h.sync() == "ready"
    assert outcome(waiter) == FakeConnection(3)


def test_a_start_asked_for_by_a_caller_fails_its_waiters_even_if_a_restart_follows(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(policy=policy(initial_delay=NEVER))
    waiter = h.get()  # stopped -> starting, launched by the caller
    h.factory.wait_for_launches(1)
    h.sync()
    crash(h)  # starting -> stopped: the seed's table fails the saved futures
    assert isinstance(outcome(waiter), ProcessUnavailable)
    assert h.stats()["restart_pending"] is True


# --- the edges of the window and of the reset -----------------------------------------------


@pytest.mark.parametrize(
    ("since_the_restart", "restarts_again"),
    [(9.5, False), (10.0, False), (10.5, True)],
)
def test_a_restart_exactly_window_seconds_ago_still_counts(
    make_harness: MakeHarness, since_the_restart: float, restarts_again: bool
) -> None:
    clock = ManualClock()
    h = make_harness(policy=policy(max_restarts=1, window=10.0), clock=clock)
    h.get()
    run_until_ready(h, 1)
    crash(h)
    run_until_ready(h, 2)  # the restart happened at the clock's "now"
    clock.advance(since_the_restart)
    with structlog.testing.capture_logs() as logs:
        crash(h)
    assert len(h.events(GaveUp)) == (not restarts_again)
    if restarts_again:
        run_until_ready(h, 3)
        assert h.stats()["restarts_in_window"] == 1
    else:
        assert [e["restarts"] for e in logs if e["event"] == "gave_up"] == [1]
        stats = h.stats()
        assert (stats["gave_up"], stats["restart_pending"]) == (True, False)
        assert stats["restarts_in_window"] == 1


@pytest.mark.parametrize(
    ("uptime", "resets"),
    [(4.5, False), (5.0, True), (5.5, True)],
)
def test_an_uptime_of_exactly_reset_after_resets_the_streak(
    make_harness: MakeHarness, uptime: float, resets: bool
) -> None:
    clock = ManualClock()
    h = make_harness(
        policy=policy(initial_delay=0.001, factor=10.0, reset_after=5.0, max_restarts=10),
        clock=clock,
    )
    h.get()
    with structlog.testing.capture_logs() as logs:
        h.factory.wait_for_launches(1)
        h.sync()
        crash(h)  # a failed start: restart 1 after the initial delay
        run_until_ready(h, 2)
        clock.advance(uptime)
        crash(h)
        h.factory.wait_for_launches(3)
    scheduled = [e for e in logs if e["event"] == "restart_scheduled"]
    assert [e["delay"] for e in scheduled] == pytest.approx([0.001, 0.001 if resets else 0.01])
    assert [e["attempt"] for e in scheduled] == [1, 1 if resets else 2]


def test_a_failed_start_never_resets_the_streak(make_harness: MakeHarness) -> None:
    clock = ManualClock()
    h = make_harness(
        policy=policy(initial_delay=0.001, factor=10.0, reset_after=5.0, max_restarts=10),
        clock=clock,
    )
    h.get()
    with structlog.testing.capture_logs() as logs:
        for launches in (1, 2, 3):
            h.factory.wait_for_launches(launches)
            h.sync()
            clock.advance(60.0)  # long, but the child was never ready: no uptime
            crash(h)
        h.factory.wait_for_launches(4)
    delays = [e["delay"] for e in logs if e["event"] == "restart_scheduled"]
    assert delays == pytest.approx([0.001, 0.01, 0.1])


def test_the_restart_count_is_reset_by_a_callers_launch_not_by_a_restart(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(policy=policy(initial_delay=0.001, factor=10.0, max_restarts=10))
    h.get()
    with structlog.testing.capture_logs() as logs:
        run_until_ready(h, 1)
        crash(h)
        run_until_ready(h, 2)
        crash(h)
        run_until_ready(h, 3)
        h.stop()
        h.terminated(how="clean", exit_status=0, requested=True)
        assert h.stats()["restarts_in_window"] == 2
        h.get()  # a caller's launch: the count and the streak start afresh
        run_until_ready(h, 4)
        assert h.stats()["restarts_in_window"] == 0
        crash(h)
        h.factory.wait_for_launches(5)
    delays = [e["delay"] for e in logs if e["event"] == "restart_scheduled"]
    assert delays == pytest.approx([0.001, 0.01, 0.001])
    assert h.stats()["restarts"] == 3


def test_a_superseded_timer_does_not_launch_during_another_backoff(
    make_harness: MakeHarness,
) -> None:
    from juicectl.messages import _RestartDue

    h = make_harness(policy=policy(initial_delay=NEVER))
    h.get()
    run_until_ready(h, 1)
    crash(h)  # restart 1 scheduled
    h.stop()  # and cancelled
    h.get()
    run_until_ready(h, 2)
    crash(h)  # restart 2 scheduled: the one pending now
    with structlog.testing.capture_logs() as logs:
        for token in range(3):  # every token handed out before the pending one's
            h.ref.tell(_RestartDue(token))
        assert h.sync() == "stopped"
    assert len(h.factory.launches) == 2
    assert h.stats()["restart_pending"] is True
    assert [e["event"] for e in logs].count("stale_restart_timer") == 3


@pytest.mark.parametrize("mode", ["starting", "ready", "stopping", "waiting_ready"])
def test_a_timer_firing_outside_stopped_is_ignored(make_harness: MakeHarness, mode: str) -> None:
    from juicectl.messages import _RestartDue

    h = make_harness(policy=policy(initial_delay=NEVER))
    into(h, mode)
    launches = len(h.factory.launches)
    with structlog.testing.capture_logs() as logs:
        for token in range(4):
            h.ref.tell(_RestartDue(token))
        assert h.sync() == mode
    assert len(h.factory.launches) == launches
    assert [e["event"] for e in logs].count("stale_restart_timer") == 4
    assert [e for e in logs if e["event"] == "mode_changed"] == []
