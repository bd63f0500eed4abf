"""Every row of the seed's table, driven by messages, plus the original's flaws as tests."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from controller_harness import SPEC, WAIT, FakeConnection, Harness, into, outcome, wait_until

from juicectl.actors import TRANSITIONS, Mode
from juicectl.exceptions import ControllerClosed, ProcessLaunchError, ProcessUnavailable
from juicectl.messages import (
    ChildProcessCreated,
    ChildProcessTerminated,
    GaveUp,
    GetProcess,
    ModeChanged,
    ProcessStarted,
    ProcessTerminated,
    StopChild,
    StopProcess,
    StopResult,
)

MODES = [m.value for m in Mode]
MESSAGES = ["GetProcess", "StopProcess", "ChildProcessCreated", "ChildProcessTerminated"]

CONNECTION = "connection"
"""Expected outcome: the current child's connection."""
STOP_RESULT = "stop_result"
"""Expected outcome: ``StopResult(how, reason)`` of the termination sent."""


@dataclass(frozen=True)
class Row:
    after: str
    new: Any = None
    """Outcome of the future carried by the message (None: the message carries none)."""
    earlier: dict[str, Any] = field(default_factory=dict)
    """Outcomes of the futures ``into()`` left waiting."""
    stop_child: int = 0
    """``StopChild`` orders the current process actor has received, in all."""
    started_hook: int = 0
    terminated_hook: int = 0
    launches: int = 0


P = "pending"
PU = ProcessUnavailable

TABLE: dict[tuple[str, str], Row] = {
    # getProcess
    ("stopped", "GetProcess"): Row("starting", new=P, launches=1),
    ("starting", "GetProcess"): Row("starting", new=P, earlier={"g0": P}),
    ("ready", "GetProcess"): Row("ready", new=CONNECTION),
    ("stopping", "GetProcess"): Row("stopping", new=PU, earlier={"s0": P}, stop_child=1),
    ("waiting_ready", "GetProcess"): Row("waiting_ready", new=PU, earlier={"g0": P, "s0": P}),
    # stopProcess
    ("stopped", "StopProcess"): Row("stopped", new=StopResult("not_running")),
    ("starting", "StopProcess"): Row("waiting_ready", new=P, earlier={"g0": P}),
    ("ready", "StopProcess"): Row("stopping", new=P, stop_child=1),
    ("stopping", "StopProcess"): Row("stopping", new=P, earlier={"s0": P}, stop_child=1),
    ("waiting_ready", "StopProcess"): Row("waiting_ready", new=P, earlier={"g0": P, "s0": P}),
    # childProcessCreated
    ("stopped", "ChildProcessCreated"): Row("stopped"),
    ("starting", "ChildProcessCreated"): Row("ready", earlier={"g0": CONNECTION}, started_hook=1),
    ("ready", "ChildProcessCreated"): Row("ready"),
    ("stopping", "ChildProcessCreated"): Row("stopping", earlier={"s0": P}, stop_child=1),
    ("waiting_ready", "ChildProcessCreated"): Row(
        "stopping", earlier={"g0": PU, "s0": P}, stop_child=1
    ),
    # childProcessTerminated
    ("stopped", "ChildProcessTerminated"): Row("stopped"),
    ("starting", "ChildProcessTerminated"): Row("stopped", earlier={"g0": PU}, terminated_hook=1),
    ("ready", "ChildProcessTerminated"): Row("stopped", terminated_hook=1),
    ("stopping", "ChildProcessTerminated"): Row(
        "stopped", earlier={"s0": STOP_RESULT}, stop_child=1
    ),
    # The original called the termination hook here; the documented contract says not to.
    ("waiting_ready", "ChildProcessTerminated"): Row(
        "stopped", earlier={"g0": PU, "s0": STOP_RESULT}
    ),
}


def test_the_table_covers_every_mode_and_message() -> None:
    rows = {(mode, message) for mode in MODES for message in MESSAGES}
    assert set(TABLE) == rows
    types = {
        t.__name__: t
        for t in (GetProcess, StopProcess, ChildProcessCreated, ChildProcessTerminated)
    }
    implemented = {(mode.value, t.__name__) for (mode, t) in TRANSITIONS if t.__name__ in types}
    assert implemented == rows


def check(actual: Any, expected: Any, h: Harness, termination: Any) -> None:
    if expected == CONNECTION:
        assert actual == FakeConnection(h.generation)
    elif expected == STOP_RESULT:
        assert actual == StopResult(how=termination.how, reason=termination)
    elif isinstance(expected, type):
        assert isinstance(actual, expected), actual
    else:
        assert actual == expected


@pytest.mark.parametrize(("mode", "message"), sorted(TABLE))
def test_row(harness: Harness, mode: str, message: str) -> None:
    h = harness
    row = TABLE[(mode, message)]
    futures = into(h, mode)
    launches = len(h.factory.launches)
    started, terminated = h.on_startup.calls, h.on_termination.calls
    termination = None

    with structlog.testing.capture_logs() as logs:
        new = None
        if message == "GetProcess":
            new = h.get()
        elif message == "StopProcess":
            new = h.stop()
        elif message == "ChildProcessCreated":
            h.created()
        else:
            termination = h.terminated(how="exited", exit_status=3)
        assert h.sync() == row.after

    if row.new is None:
        assert new is None
    else:
        check(outcome(new), row.new, h, termination)
    assert set(futures) == set(row.earlier)
    for key, expected in row.earlier.items():
        check(outcome(futures[key]), expected, h, termination)
    assert len(h.factory.launches) - launches == row.launches
    assert len(h.stop_children()) == row.stop_child
    assert h.on_startup.calls - started == row.started_hook
    assert h.on_termination.calls - terminated == row.terminated_hook

    changes = [(e["old"], e["new"]) for e in logs if e["event"] == "mode_changed"]
    assert changes == ([] if row.after == mode else [(mode, row.after)])
    if row.after == mode and message.startswith("Child"):
        # Nothing to do for this row: the message is odd enough to be worth a log line.
        assert [e for e in logs if e["event"] == "unexpected_message"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("offset", [-1, +1, +5])
@pytest.mark.parametrize("message", ["ChildProcessCreated", "ChildProcessTerminated"])
def test_stale_generations_are_logged_and_ignored(
    harness: Harness, mode: str, offset: int, message: str
) -> None:
    h = harness
    futures = into(h, mode)
    before = h.stats()
    events = len(h.events())
    gen = h.generation + offset
    with structlog.testing.capture_logs() as logs:
        if message == "ChildProcessCreated":
            h.created(generation=gen)
        else:
            h.terminated(generation=gen, how="killed", signal=9)
        assert h.sync() == mode
    assert all(outcome(f) == "pending" for f in futures.values())
    after = h.stats()
    after.pop("uptime"), before.pop("uptime")
    assert after == before
    assert len(h.events()) == events
    stale = [e for e in logs if e["event"] == "stale_message"]
    assert stale and stale[0]["generation"] == gen
    assert stale[0]["controller"] == "test"


def test_a_message_before_any_launch_is_stale(harness: Harness) -> None:
    with structlog.testing.capture_logs() as logs:
        harness.created(generation=0)
        harness.terminated(generation=0)
        assert harness.sync() == "stopped"
    assert [e["event"] for e in logs] == ["stale_message", "stale_message"]


# --- flaw 1: a launch failure ---------------------------------------------------------------


def test_launch_failure_fails_every_waiter_with_the_command_and_the_os_error(
    harness: Harness,
) -> None:
    h = harness
    waiters = [h.get(), h.get()]
    error = FileNotFoundError(errno.ENOENT, "No such file or directory", "fake-worker")
    h.terminated(how="launch_failed", detail=str(error), launch_error=error, pid=None)
    assert h.sync() == "stopped"
    for waiter in waiters:
        failure = outcome(waiter)
        assert isinstance(failure, ProcessLaunchError)
        assert isinstance(failure, ProcessUnavailable)
        assert failure.argv == tuple(SPEC.argv)
        assert failure.os_error is error
        assert "fake-worker" in str(failure) and "No such file" in str(failure)
    # Each waiter gets its own exception: tracebacks are per raise.
    assert outcome(waiters[0]) is not outcome(waiters[1])
    # And the next get_process tries again.
    again = h.get()
    assert h.sync() == "starting"
    assert h.generation == 2
    h.created()
    assert h.sync() == "ready"
    assert outcome(again) == FakeConnection(2)


def test_a_factory_that_raises_is_a_launch_failure(harness: Harness) -> None:
    h = harness
    h.factory.fail_with = PermissionError(errno.EACCES, "Permission denied")
    with structlog.testing.capture_logs() as logs:
        waiter = h.get()
        assert h.sync() == "stopped"
    failure = outcome(waiter)
    assert isinstance(failure, ProcessLaunchError)
    assert failure.os_error is h.factory.fail_with
    assert "process_factory_failed" in [e["event"] for e in logs]
    h.factory.fail_with = RuntimeError("bug in a factory")
    waiter = h.get()
    assert h.sync() == "stopped"
    failure = outcome(waiter)
    assert type(failure) is ProcessUnavailable
    assert "bug in a factory" in str(failure)


def test_a_crash_fails_waiters_with_the_reason_and_the_stderr_tail(harness: Harness) -> None:
    h = harness
    waiter = h.get()
    h.terminated(how="exited", exit_status=2, stderr_tail=("Traceback", "ImportError: nope"))
    h.sync()
    failure = outcome(waiter)
    assert type(failure) is ProcessUnavailable
    assert failure.stderr_tail == ("Traceback", "ImportError: nope")
    assert "exited with status 2" in failure.reason
    assert "ImportError: nope" in str(failure)


# --- flaw 2: a stop asked for while starting -------------------------------------------------


def test_stop_during_starting_resolves_only_once_the_child_has_exited(harness: Harness) -> None:
    h = harness
    getter = h.get()
    stopper = h.stop()
    assert h.sync() == "waiting_ready"
    assert h.stop_children() == []  # the seed waits for the start before shutting down
    h.created()
    assert h.sync() == "stopping"
    assert isinstance(outcome(getter), ProcessUnavailable)
    assert outcome(stopper) == "pending"  # started is not stopped
    assert h.stop_children() == [StopChild(1)]
    reason = h.terminated(how="clean", exit_status=0, requested=True)
    assert h.sync() == "stopped"
    assert outcome(stopper) == StopResult("clean", reason)


def test_stop_during_starting_when_the_start_fails(harness: Harness) -> None:
    h = harness
    getter, stopper = h.get(), h.stop()
    reason = h.terminated(how="startup_timeout", detail="not ready within 10s")
    assert h.sync() == "stopped"
    assert isinstance(outcome(getter), ProcessUnavailable)
    assert outcome(stopper) == StopResult("startup_timeout", reason)


# --- flaw 3: no termination hook after an explicit stop, on any path -------------------------


def _stop_from_ready(h: Harness) -> None:
    h.get()
    h.created()
    h.stop()
    h.terminated(how="clean", exit_status=0, requested=True)


def _stop_from_starting(h: Harness) -> None:
    h.get()
    h.stop()
    h.created()
    h.terminated(how="clean", exit_status=0, requested=True)


def _stop_from_starting_that_never_starts(h: Harness) -> None:
    h.get()
    h.stop()
    h.terminated(how="exited", exit_status=1)


def _stop_twice(h: Harness) -> None:
    h.get()
    h.created()
    h.stop()
    h.stop()
    h.terminated(how="killed", signal=9, requested=True)


def _child_dies_on_its_own_while_stopping(h: Harness) -> None:
    # The stop was asked for, even if the child happened to crash before it got the order.
    h.get()
    h.created()
    h.stop()
    h.terminated(how="exited", exit_status=1, requested=False)


@pytest.mark.parametrize(
    "path",
    [
        _stop_from_ready,
        _stop_from_starting,
        _stop_from_starting_that_never_starts,
        _stop_twice,
        _child_dies_on_its_own_while_stopping,
    ],
)
def test_no_termination_hook_after_an_explicit_stop(harness: Harness, path: Any) -> None:
    path(harness)
    assert harness.sync() == "stopped"
    assert harness.on_termination.calls == 0
    assert harness.events(ProcessTerminated) == []


def test_the_termination_hook_runs_when_the_child_dies_on_its_own(harness: Harness) -> None:
    h = harness
    h.get()
    h.created()
    reason = h.terminated(how="killed", signal=9)
    h.sync()
    assert h.on_termination.called.wait(WAIT)
    assert h.on_startup.calls == 1 and h.on_termination.calls == 1
    assert h.events(ProcessTerminated) == [ProcessTerminated("test", 1, reason)]
    # A later stop of a later child does not bring the hook back.
    h.get()
    h.created()
    h.stop()
    h.terminated(how="clean", exit_status=0, requested=True)
    h.sync()
    assert h.on_startup.calls == 2 and h.on_termination.calls == 1


# --- the rest of the contract ----------------------------------------------------------------


def test_many_waiters_during_starting_all_get_the_connection(harness: Harness) -> None:
    h = harness
    waiters = [h.get() for _ in range(20)]
    h.created(pid=777)
    assert h.sync() == "ready"
    assert {outcome(w) for w in waiters} == {FakeConnection(1)}
    assert len(h.factory.launches) == 1
    assert h.events(ProcessStarted) == [ProcessStarted("test", 1, 777)]
    assert h.factory.controllers == [h.ref]
    assert h.factory.specs == [SPEC]


def test_a_closed_connection_is_not_handed_out(harness: Harness) -> None:
    h = harness
    h.get()
    h.ref.tell(ChildProcessCreated(1, 55, FakeConnection(1, closed=True)))
    assert h.sync() == "ready"  # the exit is not reported yet
    getter = h.get()
    h.sync()
    failure = outcome(getter)
    assert type(failure) is ProcessUnavailable and "connection to child 55 was lost" in str(failure)


def test_mode_changes_are_events_and_log_lines(harness: Harness) -> None:
    h = harness
    with structlog.testing.capture_logs() as logs:
        h.get()
        h.created(pid=99)
        h.stop()
        h.terminated(how="clean", exit_status=0, requested=True)
        h.sync()
    changes = [e for e in logs if e["event"] == "mode_changed"]
    assert [(e["old"], e["new"], e["cause"]) for e in changes] == [
        ("stopped", "starting", "GetProcess"),
        ("starting", "ready", "ChildProcessCreated"),
        ("ready", "stopping", "StopProcess"),
        ("stopping", "stopped", "ChildProcessTerminated"),
    ]
    assert [e["pid"] for e in changes] == [None, 99, 99, 99]
    assert {e["generation"] for e in changes} == {1}
    assert {e["controller"] for e in changes} == {"test"}
    assert h.events(ModeChanged) == [
        ModeChanged("test", "stopped", "starting", "GetProcess", 1),
        ModeChanged("test", "starting", "ready", "ChildProcessCreated", 1),
        ModeChanged("test", "ready", "stopping", "StopProcess", 1),
        ModeChanged("test", "stopping", "stopped", "ChildProcessTerminated", 1),
    ]


def test_subscribe_adds_a_subscriber_for_every_event(harness: Harness) -> None:
    from controller_harness import Recorder

    h = harness
    late = Recorder.start()
    h.subscribe(late)
    h.subscribe(late)  # once is enough
    h.get()
    h.created()
    h.sync()
    events = late.ask("events", timeout=WAIT)
    assert [type(e) for e in events] == [ModeChanged, ModeChanged, ProcessStarted]


def test_a_dead_subscriber_is_dropped(harness: Harness) -> None:
    from controller_harness import Recorder

    h = harness
    gone = Recorder.start()
    h.subscribe(gone)
    gone.stop()
    with structlog.testing.capture_logs() as logs:
        h.get()
        h.sync()
    assert [e["event"] for e in logs].count("subscriber_gone") == 1


def test_stats(make_harness: Any) -> None:
    from controller_harness import ManualClock

    clock = ManualClock()
    h = make_harness(clock=clock)
    assert h.stats() == {
        "name": "test",
        "mode": "stopped",
        "pid": None,
        "generation": 0,
        "uptime": None,
        "restarts": 0,
        "restarts_in_window": 0,
        "restart_pending": False,
        "gave_up": False,
        "waiting": 0,
        "last_exit": None,
        # the current child's request counters (no child connected: zeros)
        "sent": 0,
        "answered": 0,
        "failed": 0,
        "in_flight": 0,
    }
    h.get()
    h.get()
    assert h.stats()["waiting"] == 2
    h.created(pid=321)
    h.sync()
    clock.advance(12.5)
    stats = h.stats()
    assert (stats["mode"], stats["pid"], stats["generation"], stats["uptime"]) == (
        "ready",
        321,
        1,
        12.5,
    )
    h.terminated(how="killed", signal=9, pid=321)
    stats = h.stats()
    assert (stats["mode"], stats["pid"], stats["uptime"]) == ("stopped", None, None)
    assert stats["last_exit"] == {
        "description": "child 321 killed by SIGKILL",
        "how": "killed",
        "exit_status": None,
        "signal": 9,
        "requested": False,
    }
    h.get()
    h.created()
    h.stop()
    h.terminated(how="clean", exit_status=0, requested=True)
    assert h.stats()["last_exit"]["requested"] is True


# --- closing and dying ------------------------------------------------------------------------


def test_close_when_stopped(harness: Harness) -> None:
    h = harness
    assert h.close().get(timeout=WAIT) == StopResult("not_running")
    h.ref.actor_stopped.wait(WAIT)
    assert not h.ref.is_alive()


def test_close_when_ready_stops_the_child_then_the_actor(harness: Harness) -> None:
    h = harness
    h.get()
    h.created()
    closer = h.close()
    refused = h.get()
    assert h.sync() == "stopping"
    assert isinstance(outcome(refused), ControllerClosed)
    assert h.stop_children() == [StopChild(1)]
    assert outcome(closer) == "pending"
    reason = h.terminated(how="clean", exit_status=0, requested=True)
    assert closer.get(timeout=WAIT) == StopResult("clean", reason)
    assert not h.ref.is_alive()
    assert h.on_termination.calls == 0


@pytest.mark.parametrize("ready_meanwhile", [False, True], ids=["not-ready", "ready-meanwhile"])
def test_close_when_starting(harness: Harness, ready_meanwhile: bool) -> None:
    h = harness
    getter = h.get()
    closer = h.close()
    assert h.sync() == "waiting_ready"
    assert isinstance(outcome(getter), ControllerClosed)
    # Unlike stopProcess, a close does not wait for the start: the application is ending.
    stops = [StopChild(1)]
    how = "stdin_closed"
    if ready_meanwhile:
        h.created()  # it was ready before the process actor read the stop
        assert h.sync() == "stopping"
        stops.append(StopChild(1))  # told again; the process actor ignores a second stop
        how = "clean"
    assert h.stop_children() == stops
    stopper = h.stop()  # a stop asked for while closing waits for the same exit
    h.sync()
    reason = h.terminated(how=how, exit_status=0, requested=True)
    assert closer.get(timeout=WAIT) == StopResult(how, reason)
    assert stopper.get(timeout=WAIT) == StopResult(how, reason)
    assert h.on_termination.calls == 0


def test_messages_queued_behind_a_close_are_all_answered(harness: Harness) -> None:
    h = harness
    closer = h.close()
    late = [h.get(), h.stop()]
    closer.get(timeout=WAIT)
    h.ref.actor_stopped.wait(WAIT)
    # Told after the close was handled, they are answered by the drain of the inbox, after the
    # close's own answer and after pykka marks the actor stopped.
    wait_until(lambda: all(future.done() for future in late))
    assert isinstance(late[0].exception(), ControllerClosed)
    assert outcome(late[1]) == StopResult("not_running")


def test_stopping_the_actor_fails_every_future_and_stops_the_child(harness: Harness) -> None:
    h = harness
    h.get()
    h.created()
    stopper = h.stop()
    h.sync()
    h.ref.stop()
    failure = stopper.exception()
    assert isinstance(failure, ControllerClosed)


def test_stopping_the_actor_while_starting(harness: Harness) -> None:
    h = harness
    getters = [h.get(), h.get()]
    h.sync()
    with structlog.testing.capture_logs() as logs:
        h.ref.stop()
    assert all(isinstance(g.exception(), ControllerClosed) for g in getters)
    launch = h.factory.launches[0]
    assert StopChild(1) in launch.ref.ask("received", timeout=WAIT)
    assert "controller_stopped_with_child" in [e["event"] for e in logs]


class _Bomb:
    """A 'subscriber' whose tell() raises: a bug that kills the controller actor."""

    def tell(self, message: object) -> None:
        raise RuntimeError("boom")


def test_a_crashing_controller_leaves_no_future_hanging(harness: Harness) -> None:
    h = harness
    getter = h.get()
    h.sync()
    h.subscribe(_Bomb())
    with structlog.testing.capture_logs() as logs:
        h.created()  # publishing ModeChanged raises inside the actor
        assert h.ref.actor_stopped.wait(WAIT)
        # on_failure logs and settles after pykka marks the actor stopped: wait for its end.
        assert isinstance(_wait(getter), ControllerClosed)
    assert "controller_failed" in [e["event"] for e in logs]
    launch = h.factory.launches[0]
    assert StopChild(1) in launch.ref.ask("received", timeout=WAIT)


def _wait(future: Any) -> BaseException | None:
    try:
        future.get(timeout=WAIT)
    except BaseException as error:
        return error
    return None


def test_gave_up_is_not_told_with_the_seed_policy(harness: Harness) -> None:
    h = harness
    for _ in range(3):
        h.get()
        h.terminated(how="exited", exit_status=1)
    assert h.sync() == "stopped"
    assert h.events(GaveUp) == []
    assert h.stats()["restart_pending"] is False


# --- what caused each change of mode --------------------------------------------------------


def _changes(h: Harness) -> list[tuple[str, str, str, int]]:
    return [(e.old, e.new, e.cause, e.generation) for e in h.events(ModeChanged)]


def test_mode_changed_cause_of_a_stop(harness: Harness) -> None:
    h = harness
    h.get()
    h.stop()  # while starting
    h.created()
    h.terminated(how="clean", exit_status=0, requested=True)
    h.get()
    h.created()
    h.stop()  # while ready
    h.terminated(how="clean", exit_status=0, requested=True)
    h.stop()  # while stopped: no change
    assert _changes(h) == [
        ("stopped", "starting", "GetProcess", 1),
        ("starting", "waiting_ready", "StopProcess", 1),
        ("waiting_ready", "stopping", "ChildProcessCreated", 1),
        ("stopping", "stopped", "ChildProcessTerminated", 1),
        ("stopped", "starting", "GetProcess", 2),
        ("starting", "ready", "ChildProcessCreated", 2),
        ("ready", "stopping", "StopProcess", 2),
        ("stopping", "stopped", "ChildProcessTerminated", 2),
    ]


def test_mode_changed_cause_of_a_launch_failure(harness: Harness) -> None:
    h = harness
    h.factory.fail_with = FileNotFoundError(errno.ENOENT, "No such file or directory")
    with structlog.testing.capture_logs() as logs:
        h.get()
        assert h.sync() == "stopped"
    h.factory.fail_with = None
    h.get()
    error = FileNotFoundError(errno.ENOENT, "No such file or directory", "fake-worker")
    h.terminated(how="launch_failed", detail=str(error), launch_error=error, pid=None)
    assert _changes(h) == [
        # the factory raised: the launch still counts as one, and ends as one
        ("stopped", "starting", "GetProcess", 1),
        ("starting", "stopped", "ChildProcessTerminated", 1),
        # the process actor reported it
        ("stopped", "starting", "GetProcess", 2),
        ("starting", "stopped", "ChildProcessTerminated", 2),
    ]
    terminated = [e for e in logs if e["event"] == "child_terminated"]
    assert len(terminated) == 1
    assert (terminated[0]["how"], terminated[0]["generation"]) == ("launch_failed", 1)
    assert terminated[0]["requested"] is False
    assert h.stats()["last_exit"]["how"] == "launch_failed"


def test_a_factory_failure_is_a_termination_told_to_subscribers(harness: Harness) -> None:
    h = harness
    h.factory.fail_with = PermissionError(errno.EACCES, "Permission denied")
    h.get()
    h.sync()
    assert h.on_termination.called.wait(WAIT)
    (event,) = h.events(ProcessTerminated)
    assert (event.generation, event.reason.how) == (1, "launch_failed")
    assert event.reason.launch_error is h.factory.fail_with
    assert "fake-worker" in event.reason.detail and "Permission denied" in event.reason.detail
    # No process actor was made for it: there is nothing to stop.
    assert h.factory.launches == []
    assert h.stop().get(timeout=WAIT) == StopResult("not_running")
