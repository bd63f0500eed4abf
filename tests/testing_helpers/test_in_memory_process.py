"""The in-memory process actor behind ``FakeController``: its table, its stop steps, and the
ends of a child that never got ready."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest

from juicectl.exceptions import ProcessUnavailable
from juicectl.juice import Shutdown
from juicectl.messages import StopResult
from juicectl.testing import FakeController
from juicectl.testing._process import LIFECYCLE, Event, Phase
from tests.supervision.conftest import wait_for
from tests.workers.commands import Echo, Sleep
from tests.workers.echo import EchoWorker

LIVING = [phase for phase in Phase if phase is not Phase.REPORTED]


@pytest.mark.parametrize("phase", LIVING, ids=lambda phase: phase.value)
@pytest.mark.parametrize("event", [Event.ENDED, Event.KILLED, Event.ACTOR_STOPPED],
                         ids=lambda event: event.value)
def test_every_living_phase_ends_in_a_report(phase: Phase, event: Event) -> None:
    assert LIFECYCLE[(phase, event)][0] is Phase.REPORTED


def test_the_stop_steps_are_the_process_actors_first_two() -> None:
    assert LIFECYCLE[(Phase.READY, Event.STOP_ASKED)][0] is Phase.STOPPING_SHUTDOWN
    # A child that never got ready is not asked for Shutdown.
    assert LIFECYCLE[(Phase.STARTING, Event.STOP_ASKED)][0] is Phase.STOPPING_CLOSE_STDIN
    assert LIFECYCLE[(Phase.STOPPING_SHUTDOWN, Event.STEP_DUE)][0] is (
        Phase.STOPPING_CLOSE_STDIN
    )
    assert LIFECYCLE[(Phase.STOPPING_CLOSE_STDIN, Event.STEP_DUE)][0] is Phase.REPORTED
    assert not [key for key in LIFECYCLE if key[0] is Phase.REPORTED]


@pytest.mark.parametrize(
    ("busy_for", "kill_timeout", "how", "step", "signum"),
    [
        # Shutdown waits behind the Sleep (one handler at a time) past stop_timeout; closing
        # the input ends the conversation once what was read is answered.
        pytest.param(1.0, 10.0, "stdin_closed", "close_stdin", None, id="after-close-input"),
        # Busy past both steps: given up, counted killed.
        pytest.param(5.0, 0.2, "killed", "sigkill", signal.SIGKILL, id="given-up"),
    ],
)
def test_a_stop_escalates_in_memory(
    busy_for: float, kill_timeout: float, how: str, step: str, signum: int | None
) -> None:
    with FakeController(EchoWorker, stop_timeout=0.2, kill_timeout=kill_timeout) as ctl:
        connection = ctl.get_process().get(timeout=10)
        connection.call(Sleep, seconds=busy_for)
        result = ctl.stop_process().get(timeout=30)
        assert result.reason is not None
        assert (result.how, result.reason.stop_step, result.reason.signal) == (how, step, signum)
        assert result.reason.requested
        assert ctl.mode == "stopped"


def test_a_child_that_ends_the_conversation_itself_exited() -> None:
    with FakeController(EchoWorker, on_process_termination=lambda: None) as ctl:
        connection = ctl.get_process().get(timeout=10)
        connection.call(Shutdown).get(timeout=10)  # not asked of the controller
        # The connection knows at once that Shutdown ended it; the controller, a moment later.
        with pytest.raises(ProcessUnavailable):
            connection.call(Echo, value="x").get(timeout=10)
        wait_for(lambda: ctl.mode == "stopped")
        last_exit = ctl.stats()["last_exit"]
        assert (last_exit["how"], last_exit["exit_status"], last_exit["requested"]) == (
            "exited", 0, False,
        )


def test_kill_child_while_it_starts_fails_the_waiters() -> None:
    started = threading.Event()

    def prepare(_connection: Any) -> None:
        started.set()
        threading.Event().wait(5)  # a slow prepare: the child stays starting meanwhile

    with FakeController(EchoWorker, prepare=prepare) as ctl:
        getter = ctl.get_process()
        assert started.wait(10)
        assert ctl.mode == "starting"
        ctl.kill_child("killed while starting")
        with pytest.raises(ProcessUnavailable, match=r"killed by SIGKILL.*killed while starting"):
            getter.get(timeout=10)
        assert ctl.mode == "stopped"
        assert ctl.stats()["last_exit"]["how"] == "signaled"


def test_a_start_past_startup_timeout_fails() -> None:
    never: Any = threading.Event()

    def prepare(_connection: Any) -> Any:
        class Never:
            def get(self, timeout: float) -> None:
                never.wait(timeout)
                raise TimeoutError("never ready")

        return Never()

    with FakeController(EchoWorker, prepare=prepare, startup_timeout=0.3) as ctl:
        with pytest.raises(ProcessUnavailable, match=r"not ready within 0\.3s"):
            ctl.get_process().get(timeout=10)
        assert ctl.stats()["last_exit"]["how"] == "startup_timeout"


def test_a_worker_that_cannot_be_made_fails_the_launch() -> None:
    class Broken(EchoWorker):
        def __init__(self) -> None:
            raise RuntimeError("no database")

    with FakeController(Broken) as ctl:
        with pytest.raises(ProcessUnavailable, match=r"cannot serve the in-memory worker .*"
                           "no database"):
            ctl.get_process().get(timeout=10)
        assert ctl.mode == "stopped"
        assert ctl.stats()["last_exit"]["how"] == "launch_failed"
        assert ctl.children == []
    assert ctl.close() is None  # closed by the with block already


def test_close_stops_a_ready_child_cleanly() -> None:
    ctl = FakeController(EchoWorker)
    ctl.get_process().get(timeout=10)
    result = ctl.close()
    assert isinstance(result, StopResult)
    assert (result.how, result.reason and result.reason.stop_step) == ("clean", "shutdown")
    assert not ctl.children[-1].alive


def test_once_the_stop_begins_a_new_request_is_refused_in_memory_too() -> None:
    with FakeController(EchoWorker, stop_timeout=10.0) as ctl:
        connection = ctl.get_process().get(timeout=10)
        busy = connection.call(Sleep, seconds=0.5)
        stopping = ctl.stop_process()
        wait_for(lambda: connection.stopping, what="the stop under way")
        late = connection.call(Echo, value="too late")
        assert late.done()
        with pytest.raises(ProcessUnavailable, match=r"is stopping \(a stop was asked for\)"):
            late.get(timeout=0)
        assert busy.get(timeout=10) == {"slept": 0.5}
        assert stopping.get(timeout=20).how == "clean"
