"""``pykka.ActorRegistry.stop_all()``, the way pykka applications end, is an explicit stop.

pykka stops the actors newest first, so a child's process actor always goes before its
controller, and a user's actor goes before or after the controller depending on which started
first. Whatever the order, the child gets the escalation of ``stop_process()`` (``Shutdown``
first), the stop counts as requested (no termination event or hook, no restart), and a user's
actor that closes its controller in its ``on_stop`` gets the ``StopResult``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pykka
import pytest
from structlog.testing import capture_logs

from juicectl import ProcessController
from juicectl.actors import ProcessActor
from juicectl.exceptions import ControllerClosed, ProcessLaunchError
from juicectl.launch import Invocation, local
from juicectl.messages import ModeChanged, ProcessTerminated, StopChild, StopResult
from juicectl.policy import LaunchSpec
from tests.supervision import children
from tests.supervision.conftest import Events, alive, policy, wait_for
from tests.workers.commands import Echo
from tests.workers.scripts import STUBBORN, worker

Supervise = Callable[..., ProcessController]


class ClosesItsController(pykka.ThreadingActor):
    """A user's actor holding a controller, which it closes as it stops.

    It is given the controller, or makes it in ``on_start`` (then it started first). What
    ``close()`` returned goes to ``results``.
    """

    use_daemon_thread = True

    def __init__(
        self,
        results: list[StopResult | None],
        controller: ProcessController | None = None,
        make: Callable[[], ProcessController] | None = None,
    ) -> None:
        super().__init__()
        self.results = results
        self.controller = controller
        self._make = make

    def on_start(self) -> None:
        if self._make is not None:
            self.controller = self._make()

    def on_stop(self) -> None:
        assert self.controller is not None
        self.results.append(self.controller.close())


def logged(logs: Sequence[Mapping[str, Any]], event: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == event]


def options(events: Events, terminated: threading.Event) -> dict[str, Any]:
    """A controller that would restart at once after an exit nobody asked for."""
    return {
        "restart": policy("permanent", initial_delay=0.01),
        "on_process_termination": terminated.set,
        "subscribers": [events.ref],
    }


@pytest.mark.parametrize("first", ["controller", "users_actor"])
def test_stop_all_stops_the_child_as_asked_and_close_in_on_stop_gets_the_result(
    supervise: Supervise, events: Events, first: str
) -> None:
    terminated = threading.Event()
    results: list[StopResult | None] = []
    if first == "controller":
        ctl = supervise(worker(), **options(events, terminated))
        ClosesItsController.start(results, controller=ctl)
    else:
        app = ClosesItsController.start(
            results, make=lambda: supervise(worker(), **options(events, terminated))
        )
        ctl = app.proxy().controller.get(timeout=10)
    pid = ctl.get_process().get(timeout=10).pid
    assert ctl.call(Echo, value="hi", timeout=10) == {"value": "hi"}

    with capture_logs() as logs:
        pykka.ActorRegistry.stop_all(timeout=30)

    assert len(results) == 1
    result = results[0]
    assert result is not None
    assert (result.how, result.reason and result.reason.stop_step) == ("clean", "shutdown")
    assert result.reason is not None and result.reason.requested
    assert not alive(pid)
    # Requested: no termination event or hook, no restart.
    assert not terminated.is_set()
    assert events.of(ProcessTerminated) == []
    assert logged(logs, "restart_scheduled") == []
    assert [(e.old, e.new, e.cause) for e in events.of(ModeChanged)][-2:] == [
        ("ready", "stopping", "close"),
        ("stopping", "stopped", "ChildProcessTerminated"),
    ]
    [ended] = logged(logs, "child_terminated")
    assert (ended["how"], ended["requested"], ended["pid"]) == ("clean", True, pid)
    assert [entry["step"] for entry in logged(logs, "stop_step")] == ["shutdown"]
    assert logged(logs, "stopped_from_outside")[0]["phase"] == "ready"
    # Nothing above a debug line for an orderly end.
    assert [e for e in logs if e["log_level"] in ("warning", "error", "critical")] == []
    stats = ctl.stats()
    assert stats["closed"] is True
    assert stats["last_exit"]["how"] == "clean"
    assert ctl.mode == "stopped"


@pytest.mark.parametrize(
    ("argv", "how", "steps"),
    [
        pytest.param(children.IGNORES_SHUTDOWN, "stdin_closed", ["shutdown", "close_stdin"],
                     id="ignores-shutdown"),
        pytest.param(children.IGNORES_SHUTDOWN_AND_EOF, "terminated",
                     ["shutdown", "close_stdin", "sigterm"], id="needs-sigterm"),
        pytest.param(children.IGNORES_SIGTERM, "killed",
                     ["shutdown", "close_stdin", "sigterm", "sigkill"], id="needs-sigkill"),
    ],
)
def test_stop_all_escalates_like_stop_process(
    supervise: Supervise, argv: list[str], how: str, steps: list[str]
) -> None:
    results: list[StopResult | None] = []
    ctl = supervise(argv)
    ClosesItsController.start(results, controller=ctl)
    pid = ctl.get_process().get(timeout=10).pid
    with capture_logs() as logs:
        pykka.ActorRegistry.stop_all(timeout=30)
    [result] = results
    assert result is not None and result.reason is not None
    assert (result.how, result.reason.stop_step) == (how, steps[-1])
    assert [entry["step"] for entry in logged(logs, "stop_step")] == steps
    assert not alive(pid)


def test_stop_all_while_the_child_starts_closes_its_stdin_first(
    supervise: Supervise, events: Events
) -> None:
    results: list[StopResult | None] = []
    ctl = supervise(children.NEVER_READY, subscribers=[events.ref])
    ClosesItsController.start(results, controller=ctl)
    getter = ctl.get_process()
    wait_for(lambda: ctl.mode == "starting")
    with capture_logs() as logs:
        pykka.ActorRegistry.stop_all(timeout=30)
    with pytest.raises(ControllerClosed):
        getter.get(timeout=10)
    [result] = results
    assert result is not None and result.reason is not None
    # A child that never answered Negotiate is not asked for Shutdown.
    assert (result.how, result.reason.stop_step) == ("stdin_closed", "close_stdin")
    assert [entry["step"] for entry in logged(logs, "stop_step")] == ["close_stdin"]
    assert logged(logs, "stopped_from_outside")[0]["phase"] == "probing"
    assert events.of(ProcessTerminated) == []


def test_a_process_actor_stopped_alone_closes_its_controller(
    supervise: Supervise, events: Events
) -> None:
    terminated = threading.Event()
    ctl = supervise(worker(), **options(events, terminated))
    pid = ctl.get_process().get(timeout=10).pid
    [process] = pykka.ActorRegistry.get_by_class(ProcessActor)
    process.stop(timeout=30)
    # The application is ending: no new child is launched for a late caller.
    with pytest.raises(ControllerClosed):
        ctl.get_process().get(timeout=10)
    assert not alive(pid)
    result = ctl.close()
    assert result is not None and (result.how, result.reason and result.reason.requested) == (
        "clean", True
    )
    assert not terminated.is_set()
    assert pykka.ActorRegistry.get_by_class(ProcessActor) == []


def test_stop_all_during_a_stop_under_way_still_stops_the_others_at_once(
    supervise: Supervise,
) -> None:
    # A's child is the newest, so stop_all() stops A's process actor first, while the stop
    # A asked for is under way. The others must not wait for A's child to end before theirs
    # begin (one stop bound in all, not one per child), and A's close() still gets the
    # StopResult of that stop.
    made = {name: supervise(children.IGNORES_SHUTDOWN_AND_EOF, name=name) for name in "BCA"}
    for name in "BCA":
        made[name].get_process().get(timeout=10)
    with capture_logs() as logs:
        stopping = made["A"].stop_process()
        wait_for(lambda: any(entry["event"] == "stop_step" and entry["controller"] == "A"
                             for entry in logs), what="A's stop under way")
        pykka.ActorRegistry.stop_all()
    assert stopping.get(timeout=10).how == "terminated"
    events = [(entry["event"], entry.get("controller")) for entry in logs]
    a_exited = events.index(("exited", "A"))
    for other in "BC":
        assert events.index(("stop_step", other)) < a_exited, events
    result = made["A"].close()
    assert result is not None and result.how == "terminated"


class HeldLauncher:
    """A launcher whose answer waits (as the ssh launcher's waits for its master to connect)
    until the test lets it go, or a minute; ``waits`` tells the process actor so."""

    waits = True
    where = "held-host"

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.let_go = threading.Event()
        self.answered = threading.Event()

    def invocation(self, spec: LaunchSpec) -> Invocation:
        self.asked.set()
        self.let_go.wait(60)
        try:
            return local().invocation(spec)
        finally:
            self.answered.set()


def test_stop_all_while_a_launcher_waits_stops_at_once(
    supervise: Supervise, events: Events
) -> None:
    held = HeldLauncher()
    ctl = supervise(worker(), launcher=held, startup_timeout=86400.0,
                    subscribers=[events.ref])
    getter = ctl.get_process()
    assert held.asked.wait(10)
    with capture_logs() as logs:
        stopper = threading.Thread(target=pykka.ActorRegistry.stop_all, daemon=True)
        stopper.start()
        stopper.join(30)
        assert not stopper.is_alive(), "stop_all() waited for the launcher"
    assert not held.let_go.is_set()
    with pytest.raises(ControllerClosed):
        getter.get(timeout=10)
    [abandoned] = logged(logs, "launch_abandoned")
    assert "held-host" in abandoned["detail"]
    assert pykka.ActorRegistry.get_by_class(ProcessActor) == []
    # Its late answer is dropped: nothing is spawned, no event told.
    held.let_go.set()
    assert held.answered.wait(10)
    result = ctl.close()
    assert result is not None and result.how == "launch_failed"
    assert events.of(ProcessTerminated) == []
    assert [entry for entry in logs if entry["event"] == "launched"] == []


def test_the_startup_timeout_ends_a_launch_the_launcher_holds(supervise: Supervise) -> None:
    held = HeldLauncher()
    ctl = supervise(worker(), launcher=held, startup_timeout=0.5)
    try:
        with pytest.raises(ProcessLaunchError, match=r"held-host: not launched within 0\.5s"):
            ctl.get_process().get(timeout=30)
        assert ctl.mode == "stopped"
    finally:
        held.let_go.set()
    # The next launch asks again, and gets a child.
    assert ctl.call(Echo, value="again", timeout=30) == {"value": "again"}


def test_a_stop_child_before_the_launcher_answers_ends_the_launch(
    supervise: Supervise,
) -> None:
    held = HeldLauncher()
    ctl = supervise(worker(), launcher=held, startup_timeout=86400.0)
    getter = ctl.get_process()
    assert held.asked.wait(10)
    [process] = pykka.ActorRegistry.get_by_class(ProcessActor)
    process.tell(StopChild(generation=1))
    with pytest.raises(ProcessLaunchError, match="held-host: stopped before it was launched"):
        getter.get(timeout=30)
    held.let_go.set()
    assert held.answered.wait(10)
    assert ctl.mode == "stopped"


def test_a_close_after_stop_all_without_blocking_keeps_to_its_own_timeout() -> None:
    # The close waits for a child still stopping, but no longer than the timeout it is given:
    # it returns None with the child's escalation still under way (a stubborn child, whose
    # stop takes stop_timeout + kill_timeout), and that escalation ends it.
    ctl = ProcessController.start(
        STUBBORN, readiness="connected", restart=policy(mode="temporary"),
        stop_timeout=3.0, kill_timeout=2.0,
    )
    pid = ctl.get_process().get(timeout=15).pid
    pykka.ActorRegistry.stop_all(block=False)
    assert ctl.close(timeout=0.5) is None
    assert alive(pid)  # still being stopped: the close did not wait for all of it
    wait_for(lambda: not alive(pid), timeout=20, what=f"child {pid} gone")
