"""Closing: a stop of the child (if any) that then stops the actor, from every mode."""

from __future__ import annotations

import pytest
import structlog
from controller_harness import WAIT, Harness, outcome

from juicectl.exceptions import ControllerClosed
from juicectl.messages import ModeChanged, StopChild, StopResult


def test_close_while_stopping_waits_for_the_same_exit(harness: Harness) -> None:
    h = harness
    h.get()
    h.created()
    stopper = h.stop()
    closer = h.close()
    refused = h.get()
    assert h.sync() == "stopping"
    assert isinstance(outcome(refused), ControllerClosed)
    assert (outcome(stopper), outcome(closer)) == ("pending", "pending")
    assert h.stop_children() == [StopChild(1)]  # the stop already asked for is enough
    launch = h.factory.launches[0]
    reason = h.terminated(how="stdin_closed", exit_status=0, requested=True)
    assert closer.get(timeout=WAIT) == StopResult("stdin_closed", reason)
    assert stopper.get(timeout=WAIT) == StopResult("stdin_closed", reason)
    assert h.ref.actor_stopped.wait(WAIT)
    assert launch.ref.ask("received", timeout=WAIT) == [StopChild(1)]
    assert h.on_termination.calls == 0


def test_close_while_waiting_ready_waits_for_the_start_then_stops(harness: Harness) -> None:
    h = harness
    getter = h.get()
    stopper = h.stop()
    assert h.sync() == "waiting_ready"
    with structlog.testing.capture_logs() as logs:
        closer = h.close()
        assert h.sync() == "waiting_ready"
    assert [e for e in logs if e["event"] == "mode_changed"] == []
    # Nobody will ever hand it a connection now.
    assert isinstance(outcome(getter), ControllerClosed)
    assert h.stop_children() == []
    h.created()
    assert h.sync() == "stopping"
    assert h.stop_children() == [StopChild(1)]
    assert (outcome(stopper), outcome(closer)) == ("pending", "pending")
    launch = h.factory.launches[0]
    reason = h.terminated(how="terminated", signal=15, requested=True)
    assert closer.get(timeout=WAIT) == StopResult("terminated", reason)
    assert stopper.get(timeout=WAIT) == StopResult("terminated", reason)
    assert h.ref.actor_stopped.wait(WAIT)
    assert launch.ref.ask("received", timeout=WAIT) == [StopChild(1)]
    assert h.on_termination.calls == 0


def test_close_while_waiting_ready_when_the_child_never_starts(harness: Harness) -> None:
    h = harness
    h.get()
    h.stop()
    closer = h.close()
    assert h.sync() == "waiting_ready"
    launch = h.factory.launches[0]
    reason = h.terminated(how="startup_timeout", detail="not ready within 10s")
    assert closer.get(timeout=WAIT) == StopResult("startup_timeout", reason)
    assert h.ref.actor_stopped.wait(WAIT)
    assert launch.ref.ask("received", timeout=WAIT) == []
    assert h.on_termination.calls == 0


def test_a_second_close_waits_for_the_same_exit(harness: Harness) -> None:
    h = harness
    h.get()
    h.created()
    first, second = h.close(), h.close()
    assert h.sync() == "stopping"
    assert h.stop_children() == [StopChild(1)]
    reason = h.terminated(how="clean", exit_status=0, requested=True)
    assert first.get(timeout=WAIT) == StopResult("clean", reason)
    assert second.get(timeout=WAIT) == StopResult("clean", reason)


def test_a_close_while_starting_fails_the_waiters_with_controller_closed(
    harness: Harness,
) -> None:
    h = harness
    getters = [h.get(), h.get()]
    h.close()
    assert h.sync() == "waiting_ready"
    failures = [outcome(g) for g in getters]
    assert all(type(f) is ControllerClosed for f in failures)
    assert failures[0] is not failures[1]
    assert "'test' is closed" in str(failures[0])


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        (
            "from_ready",
            [
                ("stopped", "starting", "GetProcess"),
                ("starting", "ready", "ChildProcessCreated"),
                ("ready", "stopping", "close"),
                ("stopping", "stopped", "ChildProcessTerminated"),
            ],
        ),
        (
            "from_starting",
            [
                ("stopped", "starting", "GetProcess"),
                ("starting", "waiting_ready", "close"),
                ("waiting_ready", "stopping", "ChildProcessCreated"),
                ("stopping", "stopped", "ChildProcessTerminated"),
            ],
        ),
    ],
)
def test_mode_changed_cause_of_a_close(
    harness: Harness, how: str, expected: list[tuple[str, str, str]]
) -> None:
    h = harness
    h.get()
    if how == "from_ready":
        h.created()
    closer = h.close()
    if how == "from_starting":
        h.created()
    h.sync()
    h.terminated(how="clean", exit_status=0, requested=True)
    closer.get(timeout=WAIT)
    assert h.ref.actor_stopped.wait(WAIT)
    events = h.recorder.ask("events", timeout=WAIT)
    changes = [e for e in events if isinstance(e, ModeChanged)]
    assert [(e.old, e.new, e.cause) for e in changes] == expected
    assert {(e.controller, e.generation) for e in changes} == {("test", 1)}


def test_a_close_after_the_close_has_finished_gets_the_same_result(harness: Harness) -> None:
    h = harness
    h.get()
    h.created()
    first = h.close()
    assert h.sync() == "stopping"
    # Both reach the inbox before the actor's own stop: the second close is handled in
    # stopped, once the first has finished.
    gate = h.hold()
    reason = h.terminated(generation=1, how="clean", exit_status=0, requested=True)
    second = h.close()
    gate.release()
    assert first.get(timeout=WAIT) == StopResult("clean", reason)
    assert second.get(timeout=WAIT) == StopResult("clean", reason)
