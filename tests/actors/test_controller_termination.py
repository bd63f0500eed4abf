"""Every branch of a child's termination: asked for or not, in which mode, restart or give up,
and what becomes of every future waiting on that child."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from controller_harness import WAIT, Harness, outcome

from juicectl.exceptions import ControllerClosed, ProcessUnavailable
from juicectl.messages import GaveUp, ModeChanged, ProcessTerminated, StopResult
from juicectl.policy import RestartPolicy

NEVER = 600.0
"""A backoff that will not fire during a test."""


def restarts(max_restarts: int = 5, mode: str = "permanent") -> RestartPolicy:
    """The first restart of a streak comes at once, every later one never (within a test)."""
    return RestartPolicy(
        mode=mode,  # type: ignore[arg-type]
        initial_delay=0.001,
        factor=1e6,
        max_delay=NEVER,
        jitter=0.0,
        max_restarts=max_restarts,
    )


TEMPORARY = RestartPolicy(mode="temporary")


# --- how the child to end was reached; the futures still waiting on it, by name -------------


def ready(h: Harness) -> dict[str, Any]:
    h.get()
    h.created()
    return {}


def starting_launched_by_a_caller(h: Harness) -> dict[str, Any]:
    return {"get": h.get()}


def starting_launched_by_a_restart(h: Harness) -> dict[str, Any]:
    h.get()
    h.created()
    h.terminated(how="exited", exit_status=1)
    h.factory.wait_for_launches(2)
    return {"get": h.get()}


def stopping(h: Harness) -> dict[str, Any]:
    h.get()
    h.created()
    return {"stop": h.stop()}


def waiting_ready(h: Harness) -> dict[str, Any]:
    return {"get": h.get(), "stop": h.stop()}


def closing_from_ready(h: Harness) -> dict[str, Any]:
    h.get()
    h.created()
    return {"close": h.close()}


def closing_from_starting(h: Harness) -> dict[str, Any]:
    getter = h.get()
    futures = {"close": h.close()}
    h.sync()
    assert isinstance(outcome(getter), ControllerClosed)
    return futures


@dataclass(frozen=True)
class Case:
    setup: Callable[[Harness], dict[str, Any]]
    policy: RestartPolicy
    exit_status: int
    mode: str
    """The mode the child ends in."""
    terminated_event: bool
    """Whether subscribers hear ``ProcessTerminated`` (the termination hook runs)."""
    restart: bool = False
    """Whether a restart is scheduled."""
    gave_up: bool = False
    get: str | None = None
    """The fate of the ``GetProcess`` future waiting on the child: ``"fails"`` or ``"waits"``
    (for the next restart); None: there is none."""

    @property
    def requested(self) -> bool:
        return not self.terminated_event


CASES = {
    # the child dies on its own while ready
    "ready-temporary": Case(ready, TEMPORARY, 1, "ready", True),
    "ready-restart": Case(ready, restarts(), 1, "ready", True, restart=True),
    "ready-give-up": Case(ready, restarts(0), 1, "ready", True, gave_up=True),
    "ready-transient-clean": Case(ready, restarts(mode="transient"), 0, "ready", True),
    "ready-transient-failed": Case(
        ready, restarts(mode="transient"), 1, "ready", True, restart=True
    ),
    # a start a caller asked for fails: its waiters fail, whatever the policy does next
    "start-temporary": Case(
        starting_launched_by_a_caller, TEMPORARY, 1, "starting", True, get="fails"
    ),
    "start-restart": Case(
        starting_launched_by_a_caller, restarts(), 1, "starting", True, restart=True, get="fails"
    ),
    "start-give-up": Case(
        starting_launched_by_a_caller, restarts(0), 1, "starting", True, gave_up=True, get="fails"
    ),
    # a failed start is abnormal whatever its exit status: "transient" restarts it too
    "start-transient-clean": Case(
        starting_launched_by_a_caller,
        restarts(mode="transient"),
        0,
        "starting",
        True,
        restart=True,
        get="fails",
    ),
    # an automatic restart fails to start: its waiters wait for the next, unless there is none
    "restart-restart": Case(
        starting_launched_by_a_restart, restarts(), 1, "starting", True, restart=True, get="waits"
    ),
    "restart-give-up": Case(
        starting_launched_by_a_restart, restarts(1), 1, "starting", True, gave_up=True, get="fails"
    ),
    "restart-transient-clean": Case(
        starting_launched_by_a_restart,
        restarts(mode="transient"),
        0,
        "starting",
        True,
        restart=True,
        get="waits",
    ),
    # a stop was asked for: never a restart, never the termination hook, whatever the policy
    "stopping-restart": Case(stopping, restarts(), 1, "stopping", False),
    "stopping-temporary": Case(stopping, TEMPORARY, 1, "stopping", False),
    "waiting_ready-restart": Case(
        waiting_ready, restarts(), 1, "waiting_ready", False, get="fails"
    ),
    "waiting_ready-temporary": Case(
        waiting_ready, TEMPORARY, 0, "waiting_ready", False, get="fails"
    ),
    "closing-ready-restart": Case(closing_from_ready, restarts(), 1, "stopping", False),
    "closing-starting-restart": Case(closing_from_starting, restarts(), 1, "waiting_ready", False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_termination(make_harness: Callable[..., Harness], name: str) -> None:
    case = CASES[name]
    h: Harness = make_harness(policy=case.policy)
    futures = case.setup(h)
    assert h.sync() == case.mode
    launches = len(h.factory.launches)
    generation = h.generation
    closing = "close" in futures
    seen = len(h.events())

    with structlog.testing.capture_logs() as logs:
        reason = h.terminated(how="exited", exit_status=case.exit_status, stderr_tail=("bye",))
        if closing:
            assert futures["close"].get(timeout=WAIT) == StopResult("exited", reason)
            assert h.ref.actor_stopped.wait(WAIT)
        else:
            h.sync()
    # A closed controller answers no query: ask its recorder directly.
    events = h.recorder.ask("events", timeout=WAIT)[seen:] if closing else h.events()[seen:]

    # The mode went to stopped, caused by the termination.
    changes = [(e.old, e.new, e.cause) for e in events if isinstance(e, ModeChanged)]
    assert (case.mode, "stopped", "ChildProcessTerminated") in changes
    (line,) = [e for e in logs if e["event"] == "child_terminated"]
    assert (line["requested"], line["generation"]) == (case.requested, generation)

    # The termination event (and hook) only when no stop was asked for.
    terminated = [e for e in events if isinstance(e, ProcessTerminated)]
    assert terminated == ([ProcessTerminated("test", generation, reason)] * case.terminated_event)

    scheduled = [e for e in logs if e["event"] == "restart_scheduled"]
    assert len(scheduled) == case.restart
    assert len([e for e in events if isinstance(e, GaveUp)]) == case.gave_up
    assert len([e for e in logs if e["event"] == "gave_up"]) == case.gave_up

    # The future waiting on the child, if any.
    if case.get == "fails":
        failure = outcome(futures["get"])
        assert type(failure) is ProcessUnavailable
        assert "exited with status" in failure.reason and failure.stderr_tail == ("bye",)
    elif case.get == "waits":
        assert outcome(futures["get"]) == "pending"
    if "stop" in futures:
        assert outcome(futures["stop"]) == StopResult("exited", reason)

    if closing:
        return
    stats = h.stats()
    assert stats["last_exit"]["requested"] is case.requested
    assert stats["gave_up"] is case.gave_up
    if case.get == "waits":
        assert stats["restart_pending"] is True
    elif case.restart:
        h.factory.wait_for_launches(launches + 1)  # the first restart of a streak: at once
    else:
        assert (stats["mode"], stats["restart_pending"]) == ("stopped", False)
        assert len(h.factory.launches) == launches
