"""The controller on real children: the seed's lifecycle, and the original's flaws fixed."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import pykka
import pytest
from structlog.testing import capture_logs

from juicectl import (
    ControllerClosed,
    ProcessController,
    ProcessLaunchError,
    ProcessUnavailable,
)
from juicectl.juice import RemoteJuiceError
from juicectl.messages import ProcessStarted, ProcessTerminated
from tests.workers.commands import Echo, Exit, Fail, Oops, Pid, Sleep
from tests.workers.scripts import CRASH_AT_START, worker

MakeController = Callable[..., ProcessController]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_starts_stopped_and_launches_on_first_get_process(make_controller: MakeController) -> None:
    ctl = make_controller(worker())
    assert ctl.mode == "stopped"
    conn = ctl.get_process().get(timeout=10)
    assert ctl.mode == "ready"
    assert conn.call(Echo, value="hi").get(timeout=5) == {"value": "hi"}
    assert Echo(value="seed style").do(conn).get(timeout=5) == {"value": "seed style"}
    # ready -> ready: the same connection
    assert ctl.get_process().get(timeout=5) is conn


def test_many_waiters_during_starting_get_the_same_connection(
    make_controller: MakeController,
) -> None:
    ctl = make_controller(worker())
    futures = [ctl.get_process() for _ in range(20)]
    connections = [f.get(timeout=10) for f in futures]
    assert all(c is connections[0] for c in connections)


def test_values_with_crlf_and_unicode_round_trip(make_controller: MakeController) -> None:
    conn = make_controller(worker()).get_process().get(timeout=10)
    for value in ["a\r\nb", "", "snowman \u2603", " leading space", "x" * 60_000]:
        assert conn.call(Echo, value=value).get(timeout=5) == {"value": value}


def test_declared_error_raises_its_class_and_keeps_the_child(
    make_controller: MakeController,
) -> None:
    conn = make_controller(worker()).get_process().get(timeout=10)
    with pytest.raises(Oops):
        conn.call(Fail).get(timeout=5)
    assert conn.call(Echo, value="still here").get(timeout=5) == {"value": "still here"}


def test_stop_in_ready_resolves_once_the_child_has_exited(make_controller: MakeController) -> None:
    ctl = make_controller(worker())
    conn = ctl.get_process().get(timeout=10)
    pid = conn.pid
    result = ctl.stop_process().get(timeout=10)
    assert result.how == "clean"
    assert result.reason is not None and result.reason.exit_status == 0
    assert ctl.mode == "stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessUnavailable):
        conn.call(Echo, value="too late").get(timeout=5)


def test_stop_during_starting_resolves_only_after_exit(make_controller: MakeController) -> None:
    ctl = make_controller(worker())
    waiter = ctl.get_process()
    stop = ctl.stop_process()
    with pytest.raises(ProcessUnavailable):
        waiter.get(timeout=10)
    result = stop.get(timeout=10)
    assert result.reason is not None and result.reason.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(result.reason.pid, 0)
    assert ctl.mode == "stopped"
    # and the controller is usable again
    assert ctl.get_process().get(timeout=10).call(Echo, value="x").get(timeout=5)


def test_stop_when_stopped_succeeds_at_once(make_controller: MakeController) -> None:
    ctl = make_controller(worker())
    assert ctl.stop_process().get(timeout=5).how == "not_running"


def test_get_process_while_stopping_fails_transiently(make_controller: MakeController) -> None:
    ctl = make_controller(worker())
    ctl.get_process().get(timeout=10)
    stop = ctl.stop_process()
    with pytest.raises(ProcessUnavailable):
        ctl.get_process().get(timeout=5)
    stop.get(timeout=10)


def test_kill_9_in_ready_fails_requests_in_flight_transiently(
    make_controller: MakeController,
) -> None:
    terminated = threading.Event()
    ctl = make_controller(worker(), on_process_termination=terminated.set)
    conn = ctl.get_process().get(timeout=10)
    in_flight = [conn.call(Sleep, seconds=30) for _ in range(5)]
    os.kill(conn.pid, signal.SIGKILL)
    for future in in_flight:
        with pytest.raises(ProcessUnavailable) as info:
            future.get(timeout=10)
        assert "killed by SIGKILL" in str(info.value)  # why it died, not just "gone"
    assert terminated.wait(10)
    wait_for(lambda: ctl.mode == "stopped")
    # a later get_process() gives a new child
    new = ctl.get_process().get(timeout=10)
    assert new.pid != conn.pid
    assert new.call(Echo, value="again").get(timeout=5) == {"value": "again"}


def test_child_exiting_during_start_fails_waiters_with_its_stderr(
    make_controller: MakeController,
) -> None:
    ctl = make_controller(CRASH_AT_START)
    with pytest.raises(ProcessUnavailable) as info:
        ctl.get_process().get(timeout=10)
    assert "status 3" in str(info.value)
    assert "missing_dependency" in str(info.value)
    assert any("missing_dependency" in line for line in info.value.stderr_tail)
    assert ctl.mode == "stopped"


def test_missing_executable_is_a_launch_error_and_mode_returns_to_stopped(
    make_controller: MakeController,
) -> None:
    ctl = make_controller(["/nonexistent/juicectl-worker", "--flag"])
    waiters = [ctl.get_process() for _ in range(3)]
    for waiter in waiters:
        with pytest.raises(ProcessLaunchError) as info:
            waiter.get(timeout=5)
        assert "/nonexistent/juicectl-worker" in str(info.value)
        assert isinstance(info.value.os_error, FileNotFoundError)
    assert ctl.mode == "stopped"


def test_permission_denied_is_a_launch_error(make_controller: MakeController, tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    ctl = make_controller([str(script)])
    with pytest.raises(ProcessLaunchError) as info:
        ctl.get_process().get(timeout=5)
    assert isinstance(info.value.os_error, PermissionError)


def test_hooks_run_on_start_and_on_unrequested_termination_only(
    make_controller: MakeController,
) -> None:
    started: list[float] = []
    terminated: list[float] = []
    ctl = make_controller(
        worker(),
        on_process_startup=lambda: started.append(time.monotonic()),
        on_process_termination=lambda: terminated.append(time.monotonic()),
    )
    conn = ctl.get_process().get(timeout=10)
    wait_for(lambda: len(started) == 1)
    ctl.stop_process().get(timeout=10)
    time.sleep(0.2)
    assert terminated == []  # an explicit stop never calls the termination hook
    conn = ctl.get_process().get(timeout=10)
    wait_for(lambda: len(started) == 2)
    conn.call(Exit, status=4)
    wait_for(lambda: len(terminated) == 1)


def test_actor_ref_subscribers_receive_events(make_controller: MakeController) -> None:
    events: list[object] = []

    class Recorder(pykka.ThreadingActor):
        def on_receive(self, message: object) -> None:
            events.append(message)

    recorder = Recorder.start()
    ctl = make_controller(worker(), on_process_termination=recorder)
    ctl.subscribe(recorder)
    conn = ctl.get_process().get(timeout=10)
    conn.call(Exit, status=5)
    wait_for(lambda: any(isinstance(e, ProcessTerminated) for e in events))
    started = [e for e in events if isinstance(e, ProcessStarted)]
    assert started and started[0].pid == conn.pid
    terminated = [e for e in events if isinstance(e, ProcessTerminated)]
    assert terminated[0].reason.exit_status == 5
    assert not terminated[0].requested


def test_prepare_runs_before_any_waiter_and_its_commands_go_first(
    make_controller: MakeController,
) -> None:
    order: list[str] = []

    def prepare(conn: object) -> object:
        order.append("prepare")
        return conn.call(Sleep, seconds=0.2)  # type: ignore[attr-defined]

    ctl = make_controller(worker(), prepare=prepare)
    conn = ctl.get_process().get(timeout=10)
    order.append("waiter")
    assert order == ["prepare", "waiter"]
    assert conn.stats()["answered"] >= 2  # Negotiate and prepare's Sleep, before any caller


def test_prepare_failure_fails_the_start(make_controller: MakeController) -> None:
    def prepare(conn: object) -> None:
        raise RuntimeError("no store configured")

    ctl = make_controller(worker(), prepare=prepare)
    with pytest.raises(ProcessUnavailable) as info:
        ctl.get_process().get(timeout=10)
    assert "no store configured" in str(info.value)
    wait_for(lambda: ctl.mode == "stopped")


def test_remote_unknown_command_raises_remote_error(make_controller: MakeController) -> None:
    from juicectl.juice import Command

    class Nope(Command):
        pass

    conn = make_controller(worker()).get_process().get(timeout=10)
    with pytest.raises(RemoteJuiceError) as info:
        conn.call(Nope).get(timeout=5)
    assert info.value.code == "UNHANDLED"


def test_close_reaps_the_child_and_stops_the_actors(make_controller: MakeController) -> None:
    ctl = make_controller(worker())
    pid = ctl.get_process().get(timeout=10).call(Pid).get(timeout=5)["pid"]
    ctl.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert ctl.close() is None  # idempotent
    with pytest.raises(ControllerClosed):  # permanent: a closed controller never restarts
        ctl.get_process().get(timeout=5)


def test_close_returns_with_no_thread_of_the_controller_left(
    make_controller: MakeController,
) -> None:
    # pykka settles what an actor's on_stop settles while its thread still runs: close()
    # waits for the threads too, so an application that counts its threads finds none left.
    for round_ in range(5):
        before = set(threading.enumerate())
        ctl = make_controller(worker(), name=f"threads-{round_}")
        ctl.get_process().get(timeout=10).call(Pid).get(timeout=5)
        result = ctl.close()
        assert result is not None and result.how == "clean"
        left = [t.name for t in set(threading.enumerate()) - before
                if t.is_alive() and t.name != "juicectl-timer"]
        assert left == [], round_


def test_every_transition_is_logged(make_controller: MakeController) -> None:
    with capture_logs() as logs:
        ctl = make_controller(worker())
        ctl.get_process().get(timeout=10)
        ctl.stop_process().get(timeout=10)
    changes = [(e["old"], e["new"]) for e in logs if e["event"] == "mode_changed"]
    assert changes == [
        ("stopped", "starting"),
        ("starting", "ready"),
        ("ready", "stopping"),
        ("stopping", "stopped"),
    ]


def test_mode_reading_is_thread_safe_under_load(make_controller: MakeController) -> None:
    ctl = make_controller(worker())
    conn = ctl.get_process().get(timeout=10)
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for i in range(200):
                assert conn.call(Echo, value=str(i)).get(timeout=5) == {"value": str(i)}
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for _ in range(20):
        assert ctl.mode == "ready"
    for thread in threads:
        thread.join(30)
    assert errors == []


def test_import_child_does_not_import_pykka_or_structlog() -> None:
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c",
         "import sys, juicectl.child; print('pykka' in sys.modules, 'structlog' in sys.modules)"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    assert out.stdout.split() == ["False", "False"]


def test_lifecycle_example_runs_and_tells_the_story() -> None:
    import subprocess

    from tests.conftest import ROOT

    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "lifecycle.py")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    for expected in ["mode_changed", "killed by SIGKILL", "restart_scheduled",
                     "-- recovered: child", "-- stopped (clean)"]:
        assert expected in text


def test_a_message_that_races_the_actor_stopping_does_not_leave_a_caller_waiting() -> None:
    from juicectl import ControllerClosed
    from juicectl.policy import LaunchSpec

    class StoppingRef:
        """Passes pykka's alive check, then the actor is gone before it reads its inbox."""

        def tell(self, message: object) -> None:
            pass

        def is_alive(self) -> bool:
            return False

        def stop(self, block: bool = True, timeout: float | None = None) -> None:
            pass

    ctl = ProcessController(StoppingRef(), "racing", LaunchSpec(argv=["unused"]))  # type: ignore[arg-type]
    with pytest.raises(ControllerClosed):
        ctl.get_process().get(timeout=1)
    with pytest.raises(ControllerClosed):
        ctl.stop_process().get(timeout=1)
    started = time.monotonic()
    assert ctl.close() is None
    assert time.monotonic() - started < 5  # not the full stop escalation's bound


def test_a_child_that_stops_reading_its_input_fails_requests_and_is_stopped(
    make_controller: MakeController,
) -> None:
    from tests.workers.scripts import CLOSES_STDIN

    terminated = threading.Event()
    events: list[ProcessTerminated] = []

    class Recorder(pykka.ThreadingActor):
        def on_receive(self, message: object) -> None:
            if isinstance(message, ProcessTerminated):
                events.append(message)
                terminated.set()

    ctl = make_controller(CLOSES_STDIN, subscribers=[Recorder.start()])
    conn = ctl.get_process().get(timeout=10)
    time.sleep(0.2)  # the child has closed its stdin by now
    futures = [conn.call(Echo, value=str(i)) for i in range(3)]
    for future in futures:
        with pytest.raises(ProcessUnavailable) as info:
            future.get(timeout=10)
        assert "stopped reading its input" in str(info.value)
    assert terminated.wait(15)
    assert events[0].reason.how == "input_closed"
    with pytest.raises(ProcessLookupError):
        os.kill(conn.pid, 0)
