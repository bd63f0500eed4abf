"""What the controller says and hands out where nothing changes mode: its log lines (whole),
the refusals' messages (whole), a connection without ``closed``, and a controller that crashes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from controller_harness import WAIT, Harness, ManualClock, into, outcome, wait_until

from juicectl.exceptions import ControllerClosed, ProcessUnavailable
from juicectl.messages import ChildProcessCreated, StopResult, _RestartDue
from juicectl.policy import RestartPolicy

MakeHarness = Callable[..., Harness]

#: A backoff that never ends while a test runs: the restart stays pending.
NEVER = 3600.0


def lines(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [line for line in logs if line["event"] == event]


def test_an_unexpected_ready_and_an_unexpected_end_are_logged_whole(harness: Harness) -> None:
    into(harness, "ready")
    with structlog.testing.capture_logs() as logs:
        harness.created(pid=77)
        harness.sync()
    assert lines(logs, "unexpected_message") == [{
        "controller": "test", "message": "ChildProcessCreated", "generation": 1,
        "mode": "ready", "pid": 77, "event": "unexpected_message", "log_level": "warning",
    }]
    harness.terminated()
    harness.sync()
    with structlog.testing.capture_logs() as logs:
        harness.terminated()
        harness.sync()
    assert lines(logs, "unexpected_message") == [{
        "controller": "test", "message": "ChildProcessTerminated", "generation": 1,
        "mode": "stopped", "event": "unexpected_message", "log_level": "warning",
    }]


def test_a_stale_message_is_logged_whole(harness: Harness) -> None:
    into(harness, "ready")
    with structlog.testing.capture_logs() as logs:
        harness.created(generation=7)
        harness.terminated(generation=0)
        harness.sync()
    assert lines(logs, "stale_message") == [
        {"controller": "test", "message": "ChildProcessCreated", "generation": 7,
         "current_generation": 1, "mode": "ready", "event": "stale_message",
         "log_level": "info"},
        {"controller": "test", "message": "ChildProcessTerminated", "generation": 0,
         "current_generation": 1, "mode": "ready", "event": "stale_message",
         "log_level": "info"},
    ]


def test_a_stale_timer_is_logged_whole(harness: Harness) -> None:
    into(harness, "ready")
    with structlog.testing.capture_logs() as logs:
        harness.ref.tell(_RestartDue(5))
        harness.sync()
    assert lines(logs, "stale_restart_timer") == [{
        "controller": "test", "token": 5, "mode": "ready", "event": "stale_restart_timer",
        "log_level": "debug",
    }]


def crashed_with_restart_pending(make_harness: MakeHarness) -> Harness:
    h = make_harness(policy=RestartPolicy(initial_delay=NEVER, max_delay=NEVER, jitter=0))
    into(h, "ready")
    h.terminated(how="exited", exit_status=3)
    assert h.sync() == "stopped"
    assert h.stats()["restart_pending"] is True
    return h


def test_a_stop_during_a_backoff_logs_the_cancel_and_refuses_the_waiters(
    make_harness: MakeHarness,
) -> None:
    h = crashed_with_restart_pending(make_harness)
    waiters = [h.get(), h.get()]
    with structlog.testing.capture_logs() as logs:
        stopper = h.stop()
        assert h.sync() == "stopped"
    assert lines(logs, "restart_cancelled") == [{
        "controller": "test", "cause": "StopProcess", "waiting": 2,
        "event": "restart_cancelled", "log_level": "info",
    }]
    assert outcome(stopper) == StopResult("not_running")
    for waiter in waiters:
        failure = outcome(waiter)
        assert type(failure) is ProcessUnavailable
        assert str(failure) == (
            "controller 'test': the pending restart was cancelled by StopProcess"
        )
    stats = h.stats()
    assert (stats["restart_pending"], stats["gave_up"]) == (False, False)


def test_a_close_during_a_backoff_logs_the_cancel_and_closes(make_harness: MakeHarness) -> None:
    h = crashed_with_restart_pending(make_harness)
    waiter = h.get()
    with structlog.testing.capture_logs() as logs:
        closer = h.close()
        assert closer.get(timeout=WAIT) == StopResult("not_running")
        assert h.ref.actor_stopped.wait(WAIT)
    assert lines(logs, "restart_cancelled") == [{
        "controller": "test", "cause": "close", "waiting": 1,
        "event": "restart_cancelled", "log_level": "info",
    }]
    assert lines(logs, "controller_closed") == [{
        "controller": "test", "generation": 1, "event": "controller_closed",
        "log_level": "info",
    }]
    failure = outcome(waiter)
    assert type(failure) is ControllerClosed and str(failure) == "controller 'test' is closed"


def test_a_get_while_stopping_is_refused_saying_so(harness: Harness) -> None:
    futures = into(harness, "waiting_ready")
    refused = harness.get()
    harness.sync()
    failure = outcome(refused)
    assert type(failure) is ProcessUnavailable
    assert str(failure) == (
        "controller 'test' is stopping its child (waiting_ready); try again once it has stopped"
    )
    # The child gets ready after all: it is stopped at once, its waiters told why.
    harness.created(pid=99)
    assert harness.sync() == "stopping"
    failure = outcome(futures["g0"])
    assert type(failure) is ProcessUnavailable
    assert str(failure) == (
        "controller 'test' stopped its child as soon as it started: a stop was requested "
        "while it was starting"
    )
    assert harness.stats()["pid"] == 99  # the child being stopped is known by its pid
    refused = harness.get()
    harness.sync()
    assert str(outcome(refused)) == (
        "controller 'test' is stopping its child (stopping); try again once it has stopped"
    )


def test_a_connection_that_does_not_say_closed_is_handed_out(harness: Harness) -> None:
    connection = object()
    first = harness.get()
    harness.ref.tell(ChildProcessCreated(1, 4001, connection))
    assert harness.sync() == "ready"
    assert outcome(first) is connection
    again = harness.get()
    harness.sync()
    assert outcome(again) is connection


class BrokenClock(ManualClock):
    """A clock that raises once armed: the controller's action fails on its thread."""

    armed = False

    def __call__(self) -> float:
        if self.armed:
            raise RuntimeError("the clock broke")
        return super().__call__()


def test_a_controller_that_crashes_logs_why_and_stops_its_child(
    make_harness: MakeHarness,
) -> None:
    clock = BrokenClock()
    h = make_harness(clock=clock)
    waiter = h.get()
    h.sync()
    clock.armed = True
    with structlog.testing.capture_logs() as logs:
        h.created()  # getting ready reads the clock: the action raises
        assert h.ref.actor_stopped.wait(WAIT)
        # pykka marks the actor stopped before on_failure runs: the log lines, the child's
        # stop and the waiter's answer come after, the waiter's last.
        wait_until(waiter.done)
    [failed] = lines(logs, "controller_failed")
    assert failed["log_level"] == "error"
    kind, error, _ = failed["exc_info"]
    assert kind is RuntimeError and str(error) == "the clock broke"
    assert lines(logs, "controller_stopped_with_child") == [{
        "controller": "test", "generation": 1, "cause": "failed",
        "event": "controller_stopped_with_child", "log_level": "warning",
    }]
    assert [type(m).__name__ for m in h.factory.launches[0].ref.ask("received", timeout=WAIT)
            ] == ["StopChild"]
    failure = outcome(waiter)  # settled, not left pending
    assert type(failure) is ControllerClosed and str(failure) == "controller 'test' is closed"


def test_a_controller_stopped_with_a_child_says_so(harness: Harness) -> None:
    into(harness, "ready")
    with structlog.testing.capture_logs() as logs:
        harness.ref.stop()
    assert lines(logs, "controller_stopped_with_child") == [{
        "controller": "test", "generation": 1, "cause": "stopped",
        "event": "controller_stopped_with_child", "log_level": "warning",
    }]


def test_an_end_and_the_restart_it_schedules_are_logged_whole(
    make_harness: MakeHarness,
) -> None:
    clock = ManualClock()
    h = make_harness(
        policy=RestartPolicy(initial_delay=NEVER, max_delay=NEVER, jitter=0), clock=clock
    )
    into(h, "ready")
    clock.advance(2.5)
    with structlog.testing.capture_logs() as logs:
        h.terminated(how="signalled", signal=9)
        h.sync()
    assert lines(logs, "child_terminated") == [{
        "controller": "test", "generation": 1, "pid": 4001, "how": "signalled",
        "exit_status": None, "signal": 9, "requested": False,
        "description": "child 4001 killed by SIGKILL", "uptime": 2.5,
        "event": "child_terminated", "log_level": "info",
    }]
    assert lines(logs, "restart_scheduled") == [{
        "controller": "test", "delay": NEVER, "attempt": 1, "restarts_in_window": 0,
        "last_exit": "child 4001 killed by SIGKILL", "event": "restart_scheduled",
        "log_level": "info",
    }]


def test_giving_up_is_logged_whole(make_harness: MakeHarness) -> None:
    h = make_harness(policy=RestartPolicy(initial_delay=0, jitter=0, max_restarts=0))
    into(h, "ready")
    with structlog.testing.capture_logs() as logs:
        h.terminated(how="exited", exit_status=3)
        h.sync()
    assert lines(logs, "gave_up") == [{
        "controller": "test", "restarts": 0, "window": 60.0, "max_restarts": 0,
        "last_exit": "child 4001 exited with status 3", "event": "gave_up",
        "log_level": "warning",
    }]


def test_a_get_after_giving_up_logs_that_it_counts_afresh(make_harness: MakeHarness) -> None:
    h = make_harness(policy=RestartPolicy(initial_delay=0, jitter=0, max_restarts=0))
    into(h, "ready")
    h.terminated(how="exited", exit_status=3)
    assert h.stats()["gave_up"] is True
    with structlog.testing.capture_logs() as logs:
        h.get()
        assert h.sync() == "starting"
    assert lines(logs, "restart_count_reset") == [{
        "controller": "test", "cause": "GetProcess", "event": "restart_count_reset",
        "log_level": "info",
    }]
    assert h.stats()["gave_up"] is False


class CountingConnection:
    """A connection that counts its requests, as ``Connection.stats()`` does."""

    closed = False

    def stats(self) -> dict[str, int]:
        return {"sent": 5, "answered": 3, "failed": 1, "in_flight": 1}


def test_the_stats_hold_the_ready_child_connection_figures(harness: Harness) -> None:
    harness.get()
    harness.ref.tell(ChildProcessCreated(1, 4001, CountingConnection()))
    assert harness.sync() == "ready"
    stats = harness.stats()
    assert {k: stats[k] for k in ("sent", "answered", "failed", "in_flight")} == {
        "sent": 5, "answered": 3, "failed": 1, "in_flight": 1,
    }
    harness.terminated()
    stats = harness.stats()
    assert {k: stats[k] for k in ("sent", "answered", "failed", "in_flight")} == {
        "sent": 0, "answered": 0, "failed": 0, "in_flight": 0,
    }


def test_a_launch_and_a_factory_that_fails_are_logged_whole(harness: Harness) -> None:
    with structlog.testing.capture_logs() as logs:
        harness.get()
        harness.sync()
    assert lines(logs, "launching") == [{
        "controller": "test", "generation": 1, "argv": ["fake-worker", "--serve"],
        "event": "launching", "log_level": "info",
    }]
    harness.terminated()
    harness.factory.fail_with = OSError("no more processes")
    with structlog.testing.capture_logs() as logs:
        harness.get()
        assert harness.sync() == "stopped"
    [failed] = lines(logs, "process_factory_failed")
    assert (failed["generation"], failed["log_level"]) == (2, "error")
