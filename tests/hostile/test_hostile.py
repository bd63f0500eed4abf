"""Hostile children: each breaks the protocol or the rules in one way, on purpose.

For each: a clear error or log line, the parent's memory bounded (measured), the child
stopped (its pid gone), nothing left over after ``close()``, and the same controller usable
again (the child's relaunch behaves, see ``tests/hostile/children/_wire.py``).

The figures (peak memory per child) are printed; see them with::

    .venv/bin/python -m pytest tests/hostile -s -q | grep -E "^hostile"
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from juicectl import ProcessUnavailable, RequestTimeout, TooManyRequests
from juicectl.connection import STRAYS_LOGGED
from juicectl.juice import Command, Integer, request_bytes
from tests.hostile.harness import (
    MemoryMeter,
    MiB,
    capture_logs_bounded,
    hostile,
    pid_alive,
    wait_for,
)
from tests.workers.commands import Echo

# Generous: the parser holds at most one line (1 MiB) or refuses a body up front; the rest
# is threads, logs and the interpreter's own noise on a shared machine.
MEMORY_BOUND = 64 * MiB

F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


class Progress(Command):
    """Asks the stderr flooder how much it has written."""

    response = [("written", Integer())]


def report(name: str, meter: MemoryMeter, extra: str = "") -> None:
    print(f"\nhostile {name:<26} {meter}{extra}")
    assert meter.traced_peak < MEMORY_BOUND, f"{name}: {meter}"
    assert meter.rss_growth < MEMORY_BOUND, f"{name}: {meter}"


def test_garbage_on_stdout_before_the_handshake(tmp_path: Path) -> None:
    with hostile("garbage_before_handshake", tmp_path) as h, capture_logs_bounded() as logs:
        with (
            MemoryMeter() as meter,
            pytest.raises(ProcessUnavailable, match="header line without ': '") as info,
        ):
            h.ctl.get_process().get(timeout=15)
        message = str(info.value)
        assert "what is not Juice before it was ready" in message
        assert "the first bytes: b'Welcome to my shell" in message
        assert "python -m juicectl.child" in message and "protect_stdio()" in message
        [error] = logs.events("protocol_error")
        assert "Welcome to my shell" in repr(error["sample"])
        stats = h.wait_stopped()
        assert stats["last_exit"]["how"] == "protocol_error"
        h.assert_gone(h.pid)
        h.assert_usable_again()
    report("garbage_before_handshake", meter)


def test_garbage_on_stdout_after_the_handshake(tmp_path: Path) -> None:
    with hostile("garbage_after_handshake", tmp_path) as h, capture_logs_bounded() as logs:
        with MemoryMeter() as meter:
            connection = h.ctl.get_process().get(timeout=15)
            with pytest.raises(ProcessUnavailable, match="broke the protocol"):
                connection.call(Echo, value="hello").get(timeout=15)
        assert logs.events("protocol_error")
        assert h.wait_stopped()["last_exit"]["how"] == "protocol_error"
        h.assert_gone(connection.pid)
        h.assert_usable_again()
    report("garbage_after_handshake", meter)


def test_a_length_of_100_gb_is_refused_before_any_body_is_buffered(tmp_path: Path) -> None:
    with hostile("huge_length", tmp_path) as h, capture_logs_bounded() as logs:
        with MemoryMeter() as meter:
            connection = h.ctl.get_process().get(timeout=15)
            with pytest.raises(ProcessUnavailable, match="exceeds max_body_length"):
                connection.call(Echo, value="hello").get(timeout=15)
            # The child keeps streaming its "body" until it is stopped: the parent reads
            # and drops it (so the child never blocks), holding none of it.
            stats = h.wait_stopped()
        [error] = logs.events("protocol_error")
        assert "100000000000" in error["error"]
        assert stats["last_exit"]["how"] == "protocol_error"
        h.assert_gone(connection.pid)
        h.assert_usable_again()
    report("huge_length (100 GB)", meter)


def test_an_endless_header_line_is_refused_at_the_line_limit(tmp_path: Path) -> None:
    with hostile("endless_line", tmp_path) as h, capture_logs_bounded() as logs:
        with MemoryMeter() as meter:
            connection = h.ctl.get_process().get(timeout=15)
            with pytest.raises(ProcessUnavailable, match="longer than max_line_length"):
                connection.call(Echo, value="hello").get(timeout=15)
            stats = h.wait_stopped()
        assert logs.events("protocol_error")
        assert stats["last_exit"]["how"] == "protocol_error"
        h.assert_gone(connection.pid)
        h.assert_usable_again()
    report("endless_line", meter)


def test_a_callback_that_writes_while_a_child_floods_keeps_the_parent_bounded(
    tmp_path: Path,
) -> None:
    # A done-callback runs on the thread that read the answer (here the caller in get()),
    # and sends a request too large for the pipe to a child that reads no more and floods
    # its stdout. The callback's write must not keep that thread from parsing what the
    # child writes: the flood reaches the line limit, and the chained request fails, with
    # the parent's memory bounded. A thread that held the flood unparsed while it waited
    # for room would grow without bound and never return.
    with hostile("floods_after_answer", tmp_path) as h, capture_logs_bounded() as logs:
        with MemoryMeter() as meter:
            connection = h.ctl.get_process().get(timeout=15)
            chained: list[Any] = []

            def send_more(_: object) -> None:
                chained.append(connection.call(Echo, value="v" * 500_000))

            first = connection.call(Echo, value="first")
            first.add_done_callback(send_more)
            assert first.get(timeout=15) == {"value": "first"}
            assert len(chained) == 1  # the callback returned: its write went on elsewhere
            with pytest.raises(ProcessUnavailable, match="longer than max_line_length"):
                chained[0].get(timeout=15)
            stats = h.wait_stopped()
        assert logs.events("protocol_error")
        assert stats["last_exit"]["how"] == "protocol_error"
        h.assert_gone(connection.pid)
        h.assert_usable_again()
    report("floods_after_answer (callback writes)", meter)


def test_a_child_ignoring_shutdown_and_sigterm_is_killed(tmp_path: Path) -> None:
    with hostile("stubborn", tmp_path) as h, capture_logs_bounded() as logs:
        with MemoryMeter() as meter:
            connection = h.ctl.get_process().get(timeout=15)
            assert connection.call(Echo, value="hi").get(timeout=10) == {"value": "hi"}
            result = h.ctl.stop_process().get(timeout=20)
        assert result.how == "killed"
        steps = [entry["step"] for entry in logs.events("stop_step")]
        assert steps == ["shutdown", "close_stdin", "sigterm", "sigkill"]
        assert h.ctl.mode == "stopped"
        h.assert_gone(connection.pid)
        h.assert_usable_again()
    report("stubborn", meter)


def test_a_child_closing_stdout_and_running_on_is_stopped(tmp_path: Path) -> None:
    with hostile("closes_stdout", tmp_path) as h, capture_logs_bounded() as logs:
        with MemoryMeter() as meter:
            connection = h.ctl.get_process().get(timeout=15)
            with pytest.raises(ProcessUnavailable, match="closed its stdout"):
                connection.call(Echo, value="hello").get(timeout=15)
            stats = h.wait_stopped()
        assert logs.events("stdout_closed_but_running")
        assert stats["last_exit"]["how"] == "stdout_closed"
        h.assert_gone(connection.pid)
        h.assert_usable_again()
    report("closes_stdout", meter)


def test_50_mb_on_stderr_while_answering(tmp_path: Path) -> None:
    total = 50 * 10**6
    with hostile("stderr_flood", tmp_path) as h, capture_logs_bounded() as logs:
        with MemoryMeter() as meter:
            connection = h.ctl.get_process().get(timeout=15)
            answered = 0
            deadline = time.monotonic() + 120
            while connection.call(Progress).get(timeout=30)["written"] < total:
                assert time.monotonic() < deadline, "the flood did not finish"
                value = f"request {answered} during the flood"
                assert connection.call(Echo, value=value).get(timeout=30) == {"value": value}
                answered += 1
            result = h.ctl.stop_process().get(timeout=20)
        assert result.how == "clean"
        assert answered > 0
        # Every line reached the log (in pieces of at most 1 KiB), none was held on to.
        assert logs.stderr_lines >= total // 8192
        lines = [entry["line"] for entry in logs.events("child_stderr")]
        assert all(len(line) <= 1024 for line in lines)
        h.assert_gone(connection.pid)
        h.assert_usable_again()
    report("stderr_flood (50 MB)", meter, f", {logs.stderr_lines} stderr lines logged")


def test_answers_to_tags_never_asked_are_logged_and_dropped(tmp_path: Path) -> None:
    with hostile("unknown_tag", tmp_path) as h, capture_logs_bounded() as logs:
        with MemoryMeter() as meter:
            connection = h.ctl.get_process().get(timeout=15)
            for n in range(20):
                value = f"mine {n}"
                assert connection.call(Echo, value=value).get(timeout=10) == {"value": value}
            assert connection.stats()["answered"] == 21  # Negotiate, and our 20
        bogus = logs.events("answer_for_unknown_tag")
        assert {entry["tag"] for entry in bogus} == {"ffff0", "ffff1"}
        assert len(bogus) == 40
        assert all(entry["log_level"] == "warning" for entry in bogus)
        result = h.ctl.stop_process().get(timeout=15)
        assert result.how == "clean"
        h.assert_gone(connection.pid)
        h.assert_usable_again()
    report("unknown_tag", meter)


def test_a_flood_of_answers_never_asked_is_logged_ever_more_rarely(tmp_path: Path) -> None:
    # Each stray answer costs the child a line; logged in full, each would cost the
    # application's log five times as much. The first STRAYS_LOGGED are logged, then those
    # whose count is a power of two.
    with hostile("unknown_tag", tmp_path) as h, capture_logs_bounded() as logs:
        connection = h.ctl.get_process().get(timeout=15)
        for n in range(300):  # two strays each: 600
            assert connection.call(Echo, value=str(n)).get(timeout=10) == {"value": str(n)}
        counts = [entry["count"] for entry in logs.events("answer_for_unknown_tag")]
        assert h.ctl.stop_process().get(timeout=15).how == "clean"
    assert counts == [*range(1, STRAYS_LOGGED + 1), 128, 256, 512]


def test_a_second_answer_to_the_same_tag_is_logged_and_dropped(tmp_path: Path) -> None:
    with hostile("answers_twice", tmp_path) as h, capture_logs_bounded() as logs:
        with MemoryMeter() as meter:
            connection = h.ctl.get_process().get(timeout=15)
            for n in range(20):
                value = f"mine {n}"
                assert connection.call(Echo, value=value).get(timeout=10) == {"value": value}
        duplicates = logs.events("answer_for_unknown_tag")
        assert len(duplicates) >= 19  # the last one may still be on its way
        assert len({entry["tag"] for entry in duplicates}) == len(duplicates)
        assert h.ctl.stop_process().get(timeout=15).how == "clean"
        h.assert_gone(connection.pid)
        h.assert_usable_again()
    report("answers_twice", meter)


@pytest.mark.parametrize("ask", ["1", "0"], ids=["with-ask", "without-ask"])
def test_a_command_the_parent_has_no_responder_for_ends_the_connection(
    tmp_path: Path, ask: str
) -> None:
    with (
        hostile("unknown_command", tmp_path, env={"HOSTILE_ASK": ask}) as h,
        capture_logs_bounded() as logs,
    ):
        with MemoryMeter() as meter:
            connection = h.ctl.get_process().get(timeout=15)
            with pytest.raises(ProcessUnavailable, match="Frobnicate"):
                connection.call(Echo, value="hello").get(timeout=15)
            stats = h.wait_stopped()
        [closed] = logs.events("connection_closed_by_request")
        assert "Frobnicate" in closed["error"]
        assert stats["last_exit"]["how"] == "protocol_error"
        if ask == "1":
            # Like the reference peer, the parent answered UNHANDLED before closing.
            replies = [e["line"] for e in logs.events("child_stderr") if "replied" in e["line"]]
            assert replies and "UNHANDLED" in replies[0]
        h.assert_gone(connection.pid)
        h.assert_usable_again()
    report(f"unknown_command ({'ask' if ask == '1' else 'no ask'})", meter)


def test_a_child_that_stops_reading_its_stdin_is_still_stopped(tmp_path: Path) -> None:
    # The child's stdin pipe is left with less room than a Shutdown request: whoever writes
    # Shutdown blocks until the child reads, which it never does. The stop must go on
    # (close stdin, SIGTERM) regardless.
    with hostile("deaf", tmp_path) as h, capture_logs_bounded() as logs:
        with MemoryMeter() as meter:
            connection = h.ctl.get_process().get(timeout=15)
            room = pipe_capacity() - 10
            overhead = len(request_bytes(Echo, "2", Echo.make_arguments({"value": ""})))
            pending = connection.call(Echo, value="x" * (room - overhead))
            result = h.ctl.stop_process().get(timeout=20)
        assert result.how == "terminated"
        steps = [entry["step"] for entry in logs.events("stop_step")]
        assert steps == ["shutdown", "close_stdin", "sigterm"]
        with pytest.raises(ProcessUnavailable):
            pending.get(timeout=10)
        h.assert_gone(connection.pid)
        h.assert_usable_again()
    report("deaf (stops reading)", meter)


def test_a_timed_call_to_a_child_that_stops_reading_returns_within_its_timeout(
    tmp_path: Path,
) -> None:
    # More than the pipe holds, to a child that never reads: the caller waits for room only
    # until its request's timeout, then a helper thread goes on with the write and the call
    # fails with RequestTimeout, instead of blocking until the child is stopped.
    with hostile("deaf", tmp_path) as h:
        connection = h.ctl.get_process().get(timeout=15)
        outcome: list[BaseException | dict[str, object]] = []

        def call() -> None:
            try:
                outcome.append(
                    connection.call(Echo, value="x" * (4 * pipe_capacity()), timeout=0.5)
                    .get(timeout=10)
                )
            except BaseException as error:
                outcome.append(error)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        caller.join(timeout=10)
        returned = not caller.is_alive()
        h.ctl.stop_process().get(timeout=20)
        caller.join(timeout=10)
        assert returned, "the call was still writing 10 s after its 0.5 s timeout"
        [error] = outcome
        assert isinstance(error, RequestTimeout), error
        h.assert_gone(connection.pid)
        h.assert_usable_again()


@pytest.mark.parametrize("timeout", [None, 1.0], ids=["no-timeout", "timeout"])
def test_a_write_to_a_child_gone_while_a_daemon_holds_its_stdin_ends_with_the_child(
    tmp_path: Path, timeout: float | None
) -> None:
    # A caller's big request blocks on the full stdin of a child that reads nothing. The
    # child is stopped, but a daemon it left behind (its own session: the stop's signals do
    # not reach it) holds that stdin open and never reads: the write gets neither room nor a
    # broken pipe. It must end with the child, not with the daemon (60 s): the caller gets
    # the child's end, and close() leaves no writer thread or descriptor behind (the
    # harness's check).
    daemon = None
    try:
        with hostile("daemon_holds_stdin", tmp_path) as h:
            connection = h.ctl.get_process().get(timeout=15)
            daemon_file = h.marker.with_name(h.marker.name + ".daemon")
            wait_for(lambda: daemon_file.exists() and daemon_file.read_text(),
                     what="the daemon's pid")
            daemon = int(daemon_file.read_text())
            outcome: list[BaseException | dict[str, object]] = []

            def call() -> None:
                try:
                    outcome.append(
                        connection.call(Echo, value="v" * 900_000, timeout=timeout)
                        .get(timeout=30)
                    )
                except BaseException as error:
                    outcome.append(error)

            sent = connection.stats()["sent"]
            caller = threading.Thread(target=call, daemon=True)
            caller.start()
            wait_for(lambda: connection.stats()["sent"] > sent, what="the request is writing")
            assert h.ctl.stop_process().get(timeout=20).how == "terminated"
            caller.join(timeout=15)
            assert not caller.is_alive(), "the call still writes to a child that is gone"
            [error] = outcome
            expected = ProcessUnavailable if timeout is None else RequestTimeout
            assert isinstance(error, expected), error
        # The harness has checked for leaks on the way out, with the daemon still there.
        assert pid_alive(daemon)
    finally:
        if daemon is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon, signal.SIGKILL)
            wait_for(lambda: not pid_alive(daemon), what="the daemon is gone")


def pipe_capacity() -> int:
    """The capacity of a new pipe (what the child's stdin gets)."""
    read_end, write_end = os.pipe()
    try:
        return fcntl.fcntl(write_end, F_GETPIPE_SZ)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_closing_stdin_under_a_blocked_write_never_sends_its_bytes_elsewhere(
    tmp_path: Path,
) -> None:
    # A caller's big request blocks on the deaf child's full pipe. The stop closes the
    # child's stdin (step 2) while that write is still in progress; file descriptors opened
    # next reuse the lowest free numbers. When SIGTERM ends the child, the blocked write
    # returns short, and the rest of the request must not go to whatever file now has the
    # stdin's old number.
    with (
        hostile("deaf", tmp_path, stop_timeout=1.0, kill_timeout=1.5) as h,
        capture_logs_bounded() as logs,
    ):
        connection = h.ctl.get_process().get(timeout=15)
        futures = []
        caller = threading.Thread(
            target=lambda: futures.append(connection.call(Echo, value="z" * 1_000_000))
        )
        caller.start()
        wait_for(lambda: connection.stats()["sent"] == 2, what="the big request is sent")
        stop = h.ctl.stop_process()
        wait_for(
            lambda: any(e["step"] == "close_stdin" for e in logs.events("stop_step")),
            what="stdin closed",
        )
        victims = [tmp_path / f"victim-{n}" for n in range(8)]
        fds = [os.open(path, os.O_WRONLY | os.O_CREAT) for path in victims]
        try:
            assert stop.get(timeout=20).how == "terminated"
            caller.join(timeout=20)
            assert not caller.is_alive()
        finally:
            for fd in fds:
                os.close(fd)
        assert {path.name: path.stat().st_size for path in victims if path.stat().st_size} == {}
        with pytest.raises(ProcessUnavailable):
            futures[0].get(timeout=10)
        h.assert_gone(connection.pid)


def test_a_child_that_stops_reading_cannot_make_the_parent_queue_without_bound(
    tmp_path: Path,
) -> None:
    # Requests to a child that reads nothing queue up in the parent. Their timeouts free
    # their slots (max_in_flight), but not the bytes still waiting to be written: without
    # a bound, a caller that keeps sending grows the queue for ever.
    with (
        hostile("deaf", tmp_path, request_timeout=0.05, max_in_flight=4) as h,
        capture_logs_bounded(),
    ):
        connection = h.ctl.get_process().get(timeout=15)
        # This caller fills the pipe and stays blocked writing until the child is gone.
        blocked = threading.Thread(
            target=lambda: connection.call(Echo, value="f" * 200_000), daemon=True
        )
        blocked.start()
        wait_for(lambda: connection.stats()["sent"] == 2, what="the pipe is filled")
        with (
            MemoryMeter() as meter,
            pytest.raises(TooManyRequests, match="not reading"),
        ):
            for _ in range(200):  # 200 MB, were nothing refused
                connection.call(Echo, value="v" * 1_000_000)
        assert h.ctl.stop_process().get(timeout=20).how == "terminated"
        blocked.join(timeout=20)
        h.assert_gone(connection.pid)
    report("deaf + timeouts (backlog)", meter)


def test_a_child_killed_half_way_through_an_answer_is_reported_as_killed(
    tmp_path: Path,
) -> None:
    # Its stdout ends in the middle of a box. That is how a SIGKILL (the OOM killer, say)
    # looks from the pipe, not a protocol error: the exit is what tells callers why.
    with hostile("dies_mid_answer", tmp_path) as h, capture_logs_bounded() as logs:
        with MemoryMeter() as meter:
            connection = h.ctl.get_process().get(timeout=15)
            with pytest.raises(ProcessUnavailable, match="killed by SIGKILL"):
                connection.call(Echo, value="hello").get(timeout=15)
            stats = h.wait_stopped()
        assert not logs.events("protocol_error")
        assert stats["last_exit"]["signal"] == 9
        # A signal juicectl did not send: not "exited" beside "killed by SIGKILL".
        assert stats["last_exit"]["how"] == "signaled"
        assert "a signal juicectl did not send" in stats["last_exit"]["description"]
        h.assert_gone(connection.pid)
        h.assert_usable_again()
    report("dies_mid_answer", meter)


def test_a_child_flooding_the_parent_with_requests_is_cut_off(tmp_path: Path) -> None:
    # Negotiate is always answered, so any child may send it. This one sends thousands and
    # never reads a reply: the answers fill its stdin, the parent's responder blocks on
    # writing them, and the requests read meanwhile must not pile up without bound.
    with (
        hostile("request_flood", tmp_path, max_in_flight=64) as h,
        capture_logs_bounded() as logs,
    ):
        with MemoryMeter() as meter:
            connection = h.ctl.get_process().get(timeout=15)
            stats = h.wait_stopped(timeout=30)
        [error] = logs.events("protocol_error")
        assert "requests to the parent" in error["error"]
        assert stats["last_exit"]["how"] == "protocol_error"
        h.assert_gone(connection.pid)
        h.assert_usable_again()
    report("request_flood", meter)
