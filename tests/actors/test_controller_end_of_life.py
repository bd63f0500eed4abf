"""The end of a controller actor's life: what every future it holds, or finds, gets.

Messages can reach the inbox after the message that stops the actor (an ``ActorRegistry``
stop, a close, a stop of the ref): pykka never hands those to ``on_receive``. The controller
reads them as it stops, so that none of their futures is left hanging. ``Harness.hold`` puts
them there at a known point: the actor is held while it answers a query, the stop goes in,
then the messages behind it.
"""

from __future__ import annotations

from typing import Any

import pykka
import pytest
import structlog
from controller_harness import WAIT, FakeConnection, Harness, Recorder, outcome, wait_until

from juicectl._future import ReplyFuture
from juicectl.exceptions import ControllerClosed
from juicectl.messages import (
    ChildProcessCreated,
    StopChild,
    StopResult,
    Subscribe,
    _GetMode,
    _GetStats,
    _RestartDue,
)
from juicectl.policy import RestartPolicy

NEVER = 600.0
"""A backoff that will not fire during a test."""


class Late:
    """The futures of the messages put into the inbox behind the stop."""

    def __init__(self, h: Harness) -> None:
        self.get = h.get()
        self.stop = h.stop()
        self.close = h.close()
        self.mode: ReplyFuture[Any] = ReplyFuture()
        h.ref.tell(_GetMode(self.mode))
        self.stats: ReplyFuture[Any] = ReplyFuture()
        h.ref.tell(_GetStats(self.stats))
        self.foreign = h.ref.ask("how are you?", block=False)


def stop_with_messages_behind(h: Harness) -> tuple[Late, list[dict[str, Any]]]:
    """Stop the actor with every kind of message waiting behind the stop; the logs."""
    with structlog.testing.capture_logs() as logs:
        gate = h.hold()
        stopped = h.ref.stop(block=False)
        late = Late(h)
        gate.release()
        assert stopped.get(timeout=WAIT) is True
    return late, logs


def test_behind_a_stop_with_a_child_running_orders_fail_and_queries_are_answered(
    harness: Harness,
) -> None:
    h = harness
    h.get()
    h.created(pid=4321)
    assert h.sync() == "ready"
    late, logs = stop_with_messages_behind(h)

    assert isinstance(outcome(late.get), ControllerClosed)
    # The child was running when the actor stopped: nobody will hear how it ends, so a stop
    # or a close cannot say it has ended.
    assert isinstance(outcome(late.stop), ControllerClosed)
    assert isinstance(outcome(late.close), ControllerClosed)
    assert "closed" in str(outcome(late.get))
    assert late.mode.get(timeout=0) == "ready"
    stats = late.stats.get(timeout=0)
    assert (stats["mode"], stats["pid"], stats["generation"]) == ("ready", 4321, 1)
    # An ask() is pykka's: it is handed back, and pykka fails it.
    with pytest.raises(pykka.ActorDeadError):
        late.foreign.get(timeout=WAIT)
    assert StopChild(1) in h.factory.launches[0].ref.ask("received", timeout=WAIT)
    assert "controller_stopped_with_child" in [e["event"] for e in logs]


def test_behind_a_stop_with_no_child_a_stop_or_close_has_nothing_to_wait_for(
    harness: Harness,
) -> None:
    h = harness
    assert h.sync() == "stopped"
    late, logs = stop_with_messages_behind(h)

    assert isinstance(outcome(late.get), ControllerClosed)
    assert outcome(late.stop) == StopResult("not_running")
    assert outcome(late.close) == StopResult("not_running")
    assert late.mode.get(timeout=0) == "stopped"
    assert late.stats.get(timeout=0)["generation"] == 0
    with pytest.raises(pykka.ActorDeadError):
        late.foreign.get(timeout=WAIT)
    assert "controller_stopped_with_child" not in [e["event"] for e in logs]


def test_behind_a_stop_once_the_child_has_exited(harness: Harness) -> None:
    h = harness
    h.get()
    h.created()
    h.terminated(how="killed", signal=9)
    assert h.sync() == "stopped"
    late, _ = stop_with_messages_behind(h)
    assert outcome(late.stop) == StopResult("not_running")
    assert outcome(late.close) == StopResult("not_running")
    assert isinstance(outcome(late.get), ControllerClosed)


def test_behind_a_finished_close_a_stop_gets_the_close_result(harness: Harness) -> None:
    h = harness
    h.get()
    h.created()
    closer = h.close()
    reason = h.terminated(how="clean", exit_status=0, requested=True)
    # The exit finishes the close, which puts the actor's stop into its inbox; the held query
    # was told before it, so everything told while it is held comes after the stop.
    gate = h.hold()
    late = Late(h)
    gate.release()
    assert h.ref.actor_stopped.wait(WAIT)
    assert closer.get(timeout=WAIT) == StopResult("clean", reason)
    # The close is answered before the drain of the inbox answers what came behind it.
    wait_until(lambda: all(future.done() for future in
                           (late.get, late.stop, late.close, late.mode, late.stats)))
    assert outcome(late.stop) == StopResult("clean", reason)
    assert outcome(late.close) == StopResult("clean", reason)
    assert isinstance(outcome(late.get), ControllerClosed)
    assert late.mode.get(timeout=0) == "stopped"
    with pytest.raises(pykka.ActorDeadError):
        late.foreign.get(timeout=WAIT)


def test_messages_without_a_future_behind_a_stop_are_dropped(harness: Harness) -> None:
    h = harness
    h.get()
    h.created()
    h.sync()
    late_subscriber = Recorder.start()
    with structlog.testing.capture_logs() as logs:
        gate = h.hold()
        stopped = h.ref.stop(block=False)
        h.ref.tell(Subscribe(late_subscriber))
        h.ref.tell(ChildProcessCreated(1, 4001, FakeConnection(1)))
        h.terminated(generation=1, how="killed", signal=9)
        h.ref.tell(_RestartDue(1))
        gate.release()
        assert stopped.get(timeout=WAIT) is True
    # None of them was acted on: no event, no launch, no transition.
    assert late_subscriber.ask("events", timeout=WAIT) == []
    assert len(h.factory.launches) == 1
    assert [e for e in logs if e["event"] == "mode_changed"] == []
    assert h.on_termination.calls == 0


def test_stopping_the_actor_with_a_close_pending(harness: Harness) -> None:
    h = harness
    h.get()
    h.created()
    closer = h.close()
    assert h.sync() == "stopping"
    assert h.stop_children() == [StopChild(1)]
    with structlog.testing.capture_logs() as logs:
        h.ref.stop()
    assert isinstance(outcome(closer), ControllerClosed)
    # The child had not exited yet: the stop is told again, as the controller goes.
    received = h.factory.launches[0].ref.ask("received", timeout=WAIT)
    assert received == [StopChild(1), StopChild(1)]
    assert "controller_stopped_with_child" in [e["event"] for e in logs]


def test_stopping_the_actor_while_waiting_ready_fails_the_stop_and_the_close(
    harness: Harness,
) -> None:
    h = harness
    getter = h.get()
    stopper = h.stop()
    closer = h.close()
    assert h.sync() == "waiting_ready"
    assert isinstance(outcome(getter), ControllerClosed)
    h.ref.stop()
    assert isinstance(outcome(stopper), ControllerClosed)
    assert "before its child had exited" in str(outcome(stopper))
    assert isinstance(outcome(closer), ControllerClosed)
    assert h.factory.launches[0].ref.ask("received", timeout=WAIT) == [StopChild(1)]


def test_stopping_the_actor_during_a_backoff(make_harness: Any) -> None:
    h = make_harness(policy=RestartPolicy(initial_delay=NEVER, jitter=0.0))
    h.get()
    h.created()
    h.terminated(how="exited", exit_status=1)
    waiters = [h.get(), h.get()]
    assert h.stats()["restart_pending"] is True
    with structlog.testing.capture_logs() as logs:
        h.ref.stop()
    for waiter in waiters:
        assert isinstance(outcome(waiter), ControllerClosed)
    assert outcome(waiters[0]) is not outcome(waiters[1])
    assert len(h.factory.launches) == 1
    # No child ran: nothing to stop.
    assert h.factory.launches[0].ref.ask("received", timeout=WAIT) == []
    assert "controller_stopped_with_child" not in [e["event"] for e in logs]


def test_stats_behind_a_stop_during_a_backoff_show_no_restart_pending(
    make_harness: Any,
) -> None:
    h = make_harness(policy=RestartPolicy(initial_delay=NEVER, jitter=0.0))
    h.get()
    h.created()
    h.terminated(how="exited", exit_status=1)
    assert h.stats()["restart_pending"] is True
    late, _ = stop_with_messages_behind(h)
    stats = late.stats.get(timeout=0)
    assert (stats["mode"], stats["restart_pending"]) == ("stopped", False)
    assert outcome(late.stop) == StopResult("not_running")
