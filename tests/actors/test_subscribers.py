"""Hooks as subscriber actors: callables wrapped in a HookActor, refs behind a filter."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import structlog
from controller_harness import WAIT, CountingHook, Harness, Recorder

from juicectl.actors import ForwardingActor, HookActor, subscriber_for
from juicectl.messages import (
    GaveUp,
    ModeChanged,
    ProcessStarted,
    ProcessTerminated,
    TerminationReason,
)

STARTED = ProcessStarted("c", 1, 42)
TERMINATED = ProcessTerminated("c", 1, TerminationReason(pid=42, exit_status=1))
CHANGED = ModeChanged("c", "stopped", "starting", "GetProcess", 1)


def test_a_hook_runs_on_its_events_only() -> None:
    hook = CountingHook()
    ref = subscriber_for(hook, [ProcessStarted])
    assert ref.actor_class is HookActor
    for event in (CHANGED, STARTED, TERMINATED, STARTED):
        ref.tell(event)
    ref.ask("sync", timeout=WAIT)
    assert hook.calls == 2


def test_a_hook_with_no_event_types_runs_on_every_event() -> None:
    hook = CountingHook()
    ref = HookActor.start(hook)
    for event in (CHANGED, STARTED, TERMINATED):
        ref.tell(event)
    ref.ask("sync", timeout=WAIT)
    assert hook.calls == 4  # the "sync" message too: it subscribed to everything


def test_a_hook_runs_on_its_own_thread() -> None:
    threads: list[threading.Thread] = []
    ref = subscriber_for(lambda: threads.append(threading.current_thread()), [ProcessStarted])
    ref.tell(STARTED)
    ref.ask("sync", timeout=WAIT)
    assert threads and threads[0] is not threading.current_thread()


def test_a_hook_that_raises_is_logged_and_keeps_running() -> None:
    hook = CountingHook(error=ValueError("broken hook"))
    ref = subscriber_for(hook, [ProcessTerminated], name="svc")
    with structlog.testing.capture_logs() as logs:
        ref.tell(TERMINATED)
        ref.tell(TERMINATED)
        ref.ask("sync", timeout=WAIT)
    assert hook.calls == 2
    assert ref.is_alive()
    failed = [e for e in logs if e["event"] == "hook_failed"]
    assert len(failed) == 2
    assert failed[0]["event"] == "hook_failed" and failed[0]["controller"] == "svc"
    assert failed[0]["log_level"] == "error"
    assert failed[0]["exc_info"] is True


def test_a_failing_hook_does_not_disturb_the_controller(make_harness: Any) -> None:
    h: Harness = make_harness()
    broken = subscriber_for(CountingHook(error=RuntimeError("nope")), [ProcessStarted])
    h.subscribe(broken)
    waiter = h.get()
    h.created()
    assert h.sync() == "ready"
    broken.ask("sync", timeout=WAIT)
    assert waiter.get(timeout=WAIT) is not None
    assert h.ref.is_alive()


def test_an_actor_ref_is_told_only_the_matching_events() -> None:
    target = Recorder.start()
    ref = subscriber_for(target, [ProcessTerminated, GaveUp])
    assert ref.actor_class is ForwardingActor
    for event in (CHANGED, STARTED, TERMINATED):
        ref.tell(event)
    ref.ask("sync", timeout=WAIT)
    assert target.ask("events", timeout=WAIT) == [TERMINATED]


def test_a_forwarding_actor_survives_its_target() -> None:
    target = Recorder.start()
    ref = subscriber_for(target, None)
    target.stop()
    with structlog.testing.capture_logs() as logs:
        ref.tell(STARTED)
        ref.tell(STARTED)
        ref.ask("sync", timeout=WAIT)
    assert [e["event"] for e in logs] == ["subscriber_gone"]
    assert ref.is_alive()


def test_anything_else_is_refused() -> None:
    with pytest.raises(TypeError, match="a callable or a"):
        subscriber_for("not a hook", [ProcessStarted])  # type: ignore[arg-type]
