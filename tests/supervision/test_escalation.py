"""Stops always finish: each escalation step, with real children that ignore the one before.

Shutdown --stop_timeout--> close stdin --kill_timeout--> SIGTERM to the group
--kill_timeout--> SIGKILL to the group. The stop future says which step ended the child.
"""

from __future__ import annotations

import array
import fcntl
import os
import signal
import termios
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from juicectl import ProcessController, ProcessUnavailable
from juicectl.actors import process as process_actor
from juicectl.messages import GaveUp, ProcessTerminated
from tests.supervision import children
from tests.supervision.conftest import FAST, Events, alive, policy, wait_for
from tests.workers.commands import Echo, Sleep
from tests.workers.scripts import CRASH_AT_START, python, worker

Supervise = Callable[..., ProcessController]

STOP, KILL = FAST["stop_timeout"], FAST["kill_timeout"]


def stop_steps(logs: Sequence[Mapping[str, Any]]) -> list[Any]:
    return [entry["step"] for entry in logs if entry["event"] == "stop_step"]


@pytest.mark.parametrize(
    ("argv", "how", "exit_status", "signum", "steps", "at_least"),
    [
        pytest.param(worker(), "clean", 0, None, ["shutdown"], 0.0, id="answers-shutdown"),
        pytest.param(
            children.IGNORES_SHUTDOWN, "stdin_closed", 0, None,
            ["shutdown", "close_stdin"], STOP, id="ignores-shutdown",
        ),
        pytest.param(
            children.IGNORES_SHUTDOWN_EXITS_1_AT_EOF, "stdin_closed", 1, None,
            ["shutdown", "close_stdin"], STOP, id="ignores-shutdown-exits-1",
        ),
        pytest.param(
            children.IGNORES_SHUTDOWN_AND_EOF, "terminated", None, signal.SIGTERM,
            ["shutdown", "close_stdin", "sigterm"], STOP + KILL, id="ignores-eof",
        ),
        pytest.param(
            children.IGNORES_SIGTERM, "killed", None, signal.SIGKILL,
            ["shutdown", "close_stdin", "sigterm", "sigkill"], STOP + 2 * KILL,
            id="ignores-sigterm",
        ),
        # Out of its group's reach, the child itself still gets each signal.
        pytest.param(
            children.LEAVES_ITS_GROUP, "terminated", None, signal.SIGTERM,
            ["shutdown", "close_stdin", "sigterm"], STOP + KILL, id="left-its-group",
        ),
        pytest.param(
            children.LEAVES_ITS_SESSION, "killed", None, signal.SIGKILL,
            ["shutdown", "close_stdin", "sigterm", "sigkill"], STOP + 2 * KILL,
            id="left-its-session-ignores-sigterm",
        ),
    ],
)
def test_each_step_ends_the_child_that_ignored_the_one_before(
    supervise: Supervise,
    argv: list[str],
    how: str,
    exit_status: int | None,
    signum: int | None,
    steps: list[str],
    at_least: float,
) -> None:
    with capture_logs() as logs:
        ctl = supervise(argv)
        conn = ctl.get_process().get(timeout=10)
        assert conn.call(Echo, value="up").get(timeout=5) == {"value": "up"}
        began = time.monotonic()
        result = ctl.stop_process().get(timeout=10)
        took = time.monotonic() - began
    assert result.how == how
    assert result.reason is not None
    assert (result.reason.exit_status, result.reason.signal) == (exit_status, signum)
    assert result.reason.requested is True
    assert stop_steps(logs) == steps
    assert result.reason.stop_step == steps[-1]
    assert took >= at_least * 0.9  # each step waited its turn (timers may fire a hair early)
    assert not alive(conn.pid)
    assert ctl.mode == "stopped"


def unread_bytes(fd: int | None) -> int:
    """How many bytes wait in the pipe whose end is ``fd``, not yet read (Linux)."""
    assert fd is not None
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


@pytest.fixture
def no_helper_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python starts no helper thread, as at interpreter exit on Python 3.12 (none for an
    atexit handler)."""
    monkeypatch.setattr(process_actor, "start_daemon", lambda *args: False)


@pytest.mark.usefixtures("no_helper_thread")
def test_without_a_thread_for_it_the_actor_writes_shutdown_itself(supervise: Supervise) -> None:
    ctl = supervise(worker())
    conn = ctl.get_process().get(timeout=10)
    with capture_logs() as logs:
        result = ctl.stop_process().get(timeout=10)
    assert result.how == "clean"
    assert stop_steps(logs) == ["shutdown"]
    assert not alive(conn.pid)


@pytest.mark.usefixtures("no_helper_thread")
def test_without_a_thread_a_full_input_pipe_skips_shutdown_for_end_of_input(
    supervise: Supervise,
) -> None:
    with capture_logs() as logs:
        ctl = supervise(worker())
        conn = ctl.get_process().get(timeout=10)
        conn.call(Sleep, seconds=30)  # the child runs it and reads nothing meanwhile
        transport = conn._transport  # the child's stdin
        # Read by the child before the pipe fills: else its read of Sleep, late on a busy
        # machine, would also take some of what fills it, and leave room for Shutdown.
        wait_for(lambda: unread_bytes(transport._fd) == 0, what="Sleep read by the child")
        # A writer fills the child's input pipe and waits there for room.
        writer = threading.Thread(
            target=lambda: [conn.call(Echo, value="x" * 60_000) for _ in range(3)], daemon=True
        )
        writer.start()
        wait_for(lambda: not transport.has_room(), what="the child's input pipe full")
        result = ctl.stop_process().get(timeout=10)
        writer.join(timeout=10)
    # No room for Shutdown and no thread to wait for room: end of input at once, then the
    # signals, for a child busy with its request.
    assert "stop_step_skipped" in [entry["event"] for entry in logs]
    assert stop_steps(logs) == ["shutdown", "close_stdin", "sigterm"]
    assert result.how == "terminated"
    assert not alive(conn.pid)


def test_close_takes_the_same_path(supervise: Supervise) -> None:
    ctl = supervise(children.IGNORES_SIGTERM, stop_timeout=0.2, kill_timeout=0.2)
    pid = ctl.get_process().get(timeout=10).pid
    result = ctl.close(timeout=10)
    assert result is not None and result.how == "killed"
    assert not alive(pid)


@pytest.mark.parametrize(
    ("argv", "steps", "signum"),
    [
        # Reads its stdin (never answering Negotiate) and exits at end of input.
        pytest.param(children.NEVER_READY, ["close_stdin"], None, id="exits-at-eof"),
        # Reads nothing at all: only the signals reach it.
        pytest.param(python("time.sleep(60)"), ["close_stdin", "sigterm"], signal.SIGTERM,
                     id="reads-nothing"),
    ],
)
def test_a_child_that_never_got_ready_is_not_asked_for_shutdown(
    supervise: Supervise, events: Events, argv: list[str], steps: list[str], signum: int | None
) -> None:
    # It never answered Negotiate, so it would never answer Shutdown: waiting stop_timeout
    # for that answer would only delay the stop (`juicectl call --startup-timeout 1 -- sleep
    # 30 X` took 8 s to end). Its stop starts at closing its stdin.
    with capture_logs() as logs:
        ctl = supervise(argv, startup_timeout=0.3, stop_timeout=30.0, subscribers=[events.ref])
        waiter = ctl.get_process()
        stopped = ctl.stop_process()  # asked while it starts: waits for the start to end
        result = stopped.get(timeout=15)
    with pytest.raises(ProcessUnavailable, match=r"not ready within 0\.3s"):
        waiter.get(timeout=5)
    assert stop_steps(logs) == steps
    assert result.reason is not None
    assert result.how == "startup_timeout" == result.reason.how
    assert result.reason.stop_step == steps[-1]
    assert result.reason.signal == signum
    assert "got Shutdown" not in result.reason.stderr_tail  # NEVER_READY says so if asked
    assert not alive(result.reason.pid)  # type: ignore[arg-type]


def test_a_signal_from_outside_is_not_reported_as_an_exit(
    supervise: Supervise, events: Events
) -> None:
    with capture_logs() as logs:
        ctl = supervise(worker(), subscribers=[events.ref])
        conn = ctl.get_process().get(timeout=10)
        os.kill(conn.pid, signal.SIGKILL)
        [terminated] = events.wait(ProcessTerminated)
    reason = terminated.reason
    assert (reason.how, reason.signal, reason.requested) == ("signaled", signal.SIGKILL, False)
    assert reason.stop_step is None
    assert reason.describe() == (
        f"child {conn.pid} killed by SIGKILL, a signal juicectl did not send"
    )
    # The log line and what callers are told agree.
    [line] = [e for e in logs if e["event"] == "child_terminated"]
    assert (line["how"], line["signal"], line["description"]) == (
        "signaled", signal.SIGKILL, reason.describe()
    )
    with pytest.raises(ProcessUnavailable, match="a signal juicectl did not send"):
        conn.call(Echo, value="gone").get(timeout=5)


def test_a_signal_from_outside_during_a_stop_is_reported_as_such(supervise: Supervise) -> None:
    with capture_logs() as logs:
        ctl = supervise(children.IGNORES_SHUTDOWN_AND_EOF, stop_timeout=30.0)
        conn = ctl.get_process().get(timeout=10)
        stopped = ctl.stop_process()
        wait_for(lambda: stop_steps(logs) == ["shutdown"], what="the Shutdown step")
        os.kill(conn.pid, signal.SIGKILL)  # juicectl would send SIGKILL only 30 s later
        result = stopped.get(timeout=10)
    assert result.reason is not None
    assert (result.how, result.reason.requested, result.reason.stop_step) == (
        "signaled", True, "shutdown"
    )


def test_grandchildren_in_the_group_go_with_the_child(supervise: Supervise, tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    ctl = supervise(children.with_grandchild(str(pid_file)))
    conn = ctl.get_process().get(timeout=10)
    wait_for(pid_file.exists, what="the grandchild's pid file")
    grandchild = int(pid_file.read_text())
    assert alive(grandchild)
    # The grandchild holds the child's stdout and stderr open: the stop must not wait on it.
    result = ctl.stop_process().get(timeout=10)
    assert result.how == "clean"
    wait_for(lambda: not alive(grandchild), timeout=5, what="grandchild gone")
    assert not alive(conn.pid)


def test_grandchild_goes_when_the_child_dies_on_its_own(
    supervise: Supervise, events: Events, tmp_path: Path
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    ctl = supervise(children.with_grandchild(str(pid_file)), subscribers=[events.ref])
    conn = ctl.get_process().get(timeout=10)
    wait_for(pid_file.exists, what="the grandchild's pid file")
    grandchild = int(pid_file.read_text())
    os.kill(conn.pid, signal.SIGKILL)
    [terminated] = events.wait(ProcessTerminated)
    assert terminated.reason.signal == signal.SIGKILL
    wait_for(lambda: not alive(grandchild), timeout=5, what="grandchild gone")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_pipes_a_daemon_grandchild_holds_are_given_up_after_the_exit(
    supervise: Supervise, tmp_path: Path
) -> None:
    # The daemon is out of reach (it left the group) and holds the child's stdout and
    # stderr: no end of file comes after the child's exit. The controller must not keep two
    # reader threads and their pipes for as long as the daemon lives.
    pid_file = tmp_path / "daemon.pid"
    fds_before = _open_fds()
    ctl = supervise(children.with_daemon(str(pid_file)))
    conn = ctl.get_process().get(timeout=10)
    wait_for(pid_file.exists, what="the daemon's pid file")
    daemon = int(pid_file.read_text())
    try:
        with capture_logs() as logs:
            assert ctl.stop_process().get(timeout=10).how == "clean"
            wait_for(
                lambda: not [t for t in threading.enumerate() if f"-{conn.pid}-" in t.name],
                what="the child's threads ended",
            )
        [abandoned] = [entry for entry in logs if entry["event"] == "streams_abandoned"]
        assert abandoned["streams"] == ["stderr", "stdout"]
        assert alive(daemon)  # still holding the pipes: out of reach, as documented
        ctl.close(timeout=10)
        wait_for(lambda: _open_fds() <= fds_before, what="the parent's pipes closed")
    finally:
        os.kill(daemon, signal.SIGKILL)


def test_crash_at_start_explains_itself(supervise: Supervise, events: Events) -> None:
    ctl = supervise(CRASH_AT_START, subscribers=[events.ref])
    with pytest.raises(ProcessUnavailable) as info:
        ctl.get_process().get(timeout=10)
    error = info.value
    assert "exited with status 3" in error.reason
    assert error.stderr_tail[-1] == "ImportError: no module named 'missing_dependency'"
    assert "missing_dependency" in str(error)  # the message shows the tail too
    [terminated] = events.wait(ProcessTerminated)
    assert terminated.reason.exit_status == 3
    assert terminated.reason.requested is False
    assert terminated.reason.stderr_tail == error.stderr_tail


def test_stderr_tail_is_bounded(supervise: Supervise) -> None:
    ctl = supervise(children.CRASH_LOUDLY)
    with pytest.raises(ProcessUnavailable) as info:
        ctl.get_process().get(timeout=10)
    tail = info.value.stderr_tail
    assert tail[-1] == "RuntimeError: cannot open the database"
    assert len(tail) <= 50
    assert sum(len(line) for line in tail) <= 8192
    assert tail[0].startswith("noise line ")  # the oldest lines were dropped, in order


def test_crash_at_start_every_time_gives_up(supervise: Supervise, events: Events) -> None:
    ctl = supervise(
        CRASH_AT_START,
        restart=policy("permanent", initial_delay=0.05, max_restarts=2, window=60),
        subscribers=[events.ref],
    )
    with pytest.raises(ProcessUnavailable):
        ctl.get_process().get(timeout=10)
    [gave_up] = events.wait(GaveUp)
    assert gave_up.restarts == 2
    assert gave_up.last.exit_status == 3
    assert len(events.of(ProcessTerminated)) == 3  # the first start and two restarts


def test_never_ready_is_stopped_at_startup_timeout_and_counts_as_a_failed_start(
    supervise: Supervise, events: Events
) -> None:
    # transient: an exit with status 0 would not restart; a failed start does.
    with capture_logs() as logs:
        ctl = supervise(
            children.NEVER_READY,
            startup_timeout=0.3,
            restart=policy("transient", initial_delay=0.05, max_restarts=1),
            subscribers=[events.ref],
        )
        began = time.monotonic()
        with pytest.raises(ProcessUnavailable) as info:
            ctl.get_process().get(timeout=10)
        took = time.monotonic() - began
        events.wait(GaveUp)
    assert took >= 0.3 * 0.9
    assert "not ready within 0.3s" in str(info.value)
    first, second = events.wait(ProcessTerminated, 2)
    for terminated in (first, second):
        # It exits with status 0 once its stdin is closed; how says why it was stopped.
        assert terminated.reason.how == "startup_timeout"
        assert terminated.reason.exit_status == 0
        assert terminated.reason.abnormal
    assert [e["event"] for e in logs if e["event"] in ("startup_timeout", "restart_scheduled")] == [
        "startup_timeout",
        "restart_scheduled",
        "startup_timeout",
    ]


def test_child_that_closes_stdout_and_keeps_running_is_stopped(
    supervise: Supervise, events: Events
) -> None:
    # It ignores end of input too: the stop has to go all the way to SIGTERM.
    ctl = supervise(children.CLOSES_STDOUT, subscribers=[events.ref])
    conn = ctl.get_process().get(timeout=10)
    [terminated] = events.wait(ProcessTerminated)
    assert terminated.reason.how == "stdout_closed"
    assert terminated.reason.signal == signal.SIGTERM
    assert terminated.reason.requested is False
    assert "closed its stdout" in terminated.reason.describe()
    assert not alive(conn.pid)
    with pytest.raises(ProcessUnavailable):
        conn.call(Echo, value="anyone?").get(timeout=5)
    wait_for(lambda: ctl.mode == "stopped")
