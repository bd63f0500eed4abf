"""The process actor: owns one child process, from launch to reaping.

One ``ProcessActor`` per child (per *generation*). It launches the child in ``on_start``,
runs three plain threads that only read and ``tell()`` what they saw (stdout into the
connection's parser, stderr into the log, the exit status), decides readiness, runs the
``prepare`` step, and reports to the controller:

* ``ChildProcessCreated(generation, pid, connection)`` once the child is ready;
* ``ChildProcessTerminated(generation, reason)`` once the child has exited *and been reaped*
  (or could not be launched), after which the actor stops itself.

Stopping escalates, each step bounded (``StopChild``, a startup timeout, a protocol error or
a closed stdout all take this path, entering at the step that still makes sense)::

    Shutdown  --stop_timeout-->  close stdin  --kill_timeout-->  SIGTERM to the group
              --kill_timeout-->  SIGKILL to the group

The child runs in its own session (so its own process group: grandchildren are signalled
with it) and, on Linux, with a parent-death signal, so it dies with the parent's thread that
launched it, which is this actor's thread: the actor lives until the child is reaped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from juicectl._log import get_logger
from juicectl._timer import TimerHandle, call_later
from juicectl.connection import READ_SIZE, Connection
from juicectl.exceptions import ProcessUnavailable, ProtocolError, TooManyRequests, TruncatedBox
from juicectl.juice import Negotiate, Shutdown
from juicectl.messages import (
    ChildProcessCreated,
    ChildProcessTerminated,
    StopChild,
    TerminationReason,
)
from juicectl.policy import LaunchSpec

log = get_logger(__name__)

# How long to wait, after the child has exited, for its stdout/stderr to reach end of file
# (a grandchild may hold them open) before reporting the termination anyway.
_DRAIN_GRACE = 0.5
# Bytes of a stderr line kept in the log and in the tail.
_STDERR_LINE_MAX = 1024
_STDERR_TAIL_BYTES = 8192


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec function setting PR_SET_PDEATHSIG (Linux), resolved before any fork."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1
    sigkill = int(signal.SIGKILL)

    def set_parent_death_signal() -> None:
        prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return set_parent_death_signal


def _tell_quietly(ref: pykka.ActorRef[Any], message: Any) -> None:
    """Tell from a plain thread or a timer; an actor that already stopped needs no news."""
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)


# --- private messages (from this actor's own threads and timers) -----------------------------


@dataclass(frozen=True)
class _ChildExited:
    """The exit watcher reaped the child."""

    returncode: int


@dataclass(frozen=True)
class _StreamClosed:
    """A reader thread reached end of file on ``stream`` ("stdout" or "stderr")."""

    stream: str


@dataclass(frozen=True)
class _ProtocolFailed:
    """The child broke the protocol (or sent a connection-closing request)."""

    error: BaseException
    sample: bytes


@dataclass(frozen=True)
class _Ready:
    """The readiness probe and the ``prepare`` step are done (``error`` if one failed)."""

    error: BaseException | None


@dataclass(frozen=True)
class _StartupTimedOut:
    """``startup_timeout`` passed before the child got ready."""


@dataclass(frozen=True)
class _StopStepDue:
    """The current stop step's time is up: take the next one."""

    step: int


@dataclass(frozen=True)
class _PipeGraceOver:
    """A pipe to the child broke a while ago (it closed its stdout, or stopped reading its
    stdin): if it still runs, it is of no use: stop it."""

    cause: str
    """``"stdout_closed"`` or ``"input_closed"``: the termination's ``how``."""
    detail: str
    """What the child did, in words."""


@dataclass(frozen=True)
class _StdinBroken:
    """Writing to the child's stdin failed (EPIPE: its read end is closed)."""

    error: str


@dataclass(frozen=True)
class _DrainTimedOut:
    """The child exited but its pipes stayed open: report the termination anyway."""


# Escalation steps, in order.
_SHUTDOWN, _CLOSE_STDIN, _TERMINATE, _KILL = range(4)


class ProcessActor(pykka.ThreadingActor):
    """Owns one child process (one generation): launch, readiness, I/O threads, stop, reap.

    Args:
        controller: the controller actor to report to.
        generation: this child's generation number.
        spec: how to launch it and the timeouts.
        name: the controller's name, for logs.
    """

    use_daemon_thread = True

    def __init__(
        self,
        controller: pykka.ActorRef[Any],
        generation: int,
        spec: LaunchSpec,
        name: str = "juicectl",
    ) -> None:
        super().__init__()
        self._controller = controller
        self._generation = generation
        self._spec = spec
        self._name = name
        self._log = log.bind(controller=name, generation=generation)
        self._popen: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        self._stdin_fd: int | None = None
        self._stdin_lock = threading.Lock()
        self._stdin_writers = 0  # writes in progress on _stdin_fd (under _stdin_lock)
        self._stdin_close_deferred = False
        self._stderr_tail: deque[str] = deque(maxlen=spec.stderr_tail_lines)
        self._stderr_lock = threading.Lock()
        self._launched_at = 0.0
        self._ready = False
        self._returncode: int | None = None
        self._open_streams = {"stdout", "stderr"}
        self._timers: list[TimerHandle] = []
        self._stop_step: int | None = None
        self._requested = False
        self._cause: str | None = None  # why we are stopping, when not requested
        self._cause_detail = ""
        self._reported = False

    @classmethod
    def factory(
        cls, name: str
    ) -> Callable[[pykka.ActorRef[Any], int, LaunchSpec], pykka.ActorRef[Any]]:
        """A process factory for ``ControllerActor``: starts one actor per child."""

        def start(
            controller: pykka.ActorRef[Any], generation: int, spec: LaunchSpec
        ) -> pykka.ActorRef[Any]:
            return cls.start(controller, generation, spec, name)

        return start

    # --- launch ------------------------------------------------------------------------

    def on_start(self) -> None:
        spec = self._spec
        argv = list(spec.argv)
        try:
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(spec.env) if spec.env is not None else None,
                cwd=spec.cwd,
                start_new_session=True,
                close_fds=True,
                bufsize=0,
                preexec_fn=_parent_death_signal(),
            )
        except (OSError, ValueError, subprocess.SubprocessError) as error:
            os_error = error if isinstance(error, OSError) else OSError(str(error))
            self._log.warning("launch_failed", argv=argv, error=str(os_error))
            self._report(
                TerminationReason(
                    how="launch_failed",
                    detail=f"cannot launch {argv!r}: {os_error.strerror or os_error}",
                    launch_error=os_error,
                )
            )
            return
        popen = self._popen
        assert popen.stdin and popen.stdout and popen.stderr
        self._launched_at = time.monotonic()
        self._stdin_fd = popen.stdin.fileno()
        self._log = self._log.bind(pid=popen.pid)
        self._log.info("launched", argv=argv)
        self._connection = Connection(
            self._write_stdin,
            pid=popen.pid,
            generation=self._generation,
            name=self._name,
            responder=spec.responder,
            request_timeout=spec.request_timeout,
            max_in_flight=spec.max_in_flight,
            busy_poll=spec.busy_poll,
            limits=spec.limits,
            on_fatal=self._connection_fatal,
            on_write_failed=self._write_failed,
        )
        me = self.actor_ref
        for target, stream_name in (
            (self._read_stdout, "stdout"),
            (self._read_stderr, "stderr"),
            (self._watch_exit, "exit"),
        ):
            threading.Thread(
                target=target,
                name=f"juicectl-{self._name}-{popen.pid}-{stream_name}",
                daemon=True,
            ).start()
        self._timers.append(
            call_later(spec.startup_timeout, lambda: _tell_quietly(me, _StartupTimedOut()))
        )
        if spec.readiness == "connected" and spec.prepare is None:
            self._became_ready(None)
        else:
            threading.Thread(
                target=self._get_ready,
                name=f"juicectl-{self._name}-{popen.pid}-startup",
                daemon=True,
            ).start()

    def _get_ready(self) -> None:
        """Readiness probe, then ``prepare``: on a thread of its own (they block)."""
        connection = self._connection
        assert connection is not None
        deadline = self._launched_at + self._spec.startup_timeout
        error: BaseException | None = None
        try:
            if self._spec.readiness == "negotiate":
                # Bounded by startup_timeout, not by the connection's request_timeout (meant
                # for calls to a running child, and often shorter than a start).
                remaining = max(0.001, deadline - time.monotonic())
                answer = connection.call(Negotiate, versions=[1], timeout=remaining).get(
                    timeout=remaining
                )
                if answer.get("version") != 1:
                    raise ProcessUnavailable(
                        f"child {connection.pid} negotiated version {answer.get('version')!r}, "
                        "not 1"
                    )
            if self._spec.prepare is not None:
                outcome = self._spec.prepare(connection)
                getter = getattr(outcome, "get", None)
                if callable(getter):
                    getter(timeout=max(0.0, deadline - time.monotonic()))
        except BaseException as failure:
            error = failure
        if error is not None and (
            isinstance(error, pykka.Timeout) or time.monotonic() >= deadline
        ):
            # Out of time: this is the startup timeout (the timer may not have fired yet).
            _tell_quietly(self.actor_ref, _StartupTimedOut())
            return
        _tell_quietly(self.actor_ref, _Ready(error))

    # --- I/O threads: they only read and tell ---------------------------------------------

    def _read_stdout(self) -> None:
        popen, connection = self._popen, self._connection
        assert popen is not None and popen.stdout is not None and connection is not None
        me = self.actor_ref

        def protocol_error(error: ProtocolError, sample: bytes) -> None:
            if isinstance(error, TruncatedBox):
                # End of file in the middle of a box: the child died (SIGKILL, the OOM
                # killer) or closed stdout while writing. Not a protocol error: handled as
                # any end of stdout, so callers learn why from the exit.
                self._log.info("stdout_ended_mid_box", error=str(error))
            else:
                _tell_quietly(me, _ProtocolFailed(error, sample))

        connection.serve_reads(popen.stdout.fileno(), protocol_error)
        with contextlib.suppress(OSError):
            popen.stdout.close()
        _tell_quietly(me, _StreamClosed("stdout"))

    def _read_stderr(self) -> None:
        popen = self._popen
        assert popen is not None and popen.stderr is not None
        fd = popen.stderr.fileno()
        pid = popen.pid
        stderr_log = log.bind(controller=self._name, generation=self._generation, pid=pid)
        partial = b""
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:
                data = b""
            if not data:
                if partial:
                    self._stderr_line(stderr_log, partial)
                break
            lines = (partial + data).split(b"\n")
            partial = lines.pop()
            if len(partial) > _STDERR_LINE_MAX:  # an endless line: log it in pieces
                lines.append(partial)
                partial = b""
            for line in lines:
                self._stderr_line(stderr_log, line)
        with contextlib.suppress(OSError):
            popen.stderr.close()
        _tell_quietly(self.actor_ref, _StreamClosed("stderr"))

    def _stderr_line(self, stderr_log: Any, raw: bytes) -> None:
        text = raw[:_STDERR_LINE_MAX].rstrip(b"\r").decode("utf-8", "replace")
        stderr_log.info("child_stderr", line=text)
        with self._stderr_lock:
            self._stderr_tail.append(text)
            while (
                len(self._stderr_tail) > 1
                and sum(len(line) for line in self._stderr_tail) > _STDERR_TAIL_BYTES
            ):
                self._stderr_tail.popleft()

    def _watch_exit(self) -> None:
        popen = self._popen
        assert popen is not None
        _tell_quietly(self.actor_ref, _ChildExited(popen.wait()))

    def _write_stdin(self, data: bytes) -> None:
        with self._stdin_lock:
            fd = self._stdin_fd
            if fd is None:
                raise BrokenPipeError("the child's stdin is closed")
            self._stdin_writers += 1
        try:
            written = os.write(fd, data)  # all of it, almost always: a pipe takes 64 KiB
            if written < len(data):
                view = memoryview(data)[written:]
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
        finally:
            with self._stdin_lock:
                self._stdin_writers -= 1
                close = self._stdin_writers == 0 and self._stdin_close_deferred
            if close:
                self._close_stdin_file()

    def _connection_fatal(self, error: BaseException) -> None:
        _tell_quietly(self.actor_ref, _ProtocolFailed(error, b""))

    def _write_failed(self, error: BaseException) -> None:
        _tell_quietly(self.actor_ref, _StdinBroken(str(error)))

    # --- messages --------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Ready):
            self._became_ready(message.error)
        elif isinstance(message, StopChild):
            self._stop_requested()
        elif isinstance(message, _ChildExited):
            self._child_exited(message.returncode)
        elif isinstance(message, _StreamClosed):
            self._stream_closed(message.stream)
        elif isinstance(message, _ProtocolFailed):
            self._protocol_failed(message.error, message.sample)
        elif isinstance(message, _StartupTimedOut):
            # Sent by the timer and by a probe that ran out of time: act (and log) once.
            if not self._ready and self._returncode is None and self._stop_step is None:
                self._log.warning("startup_timeout", timeout=self._spec.startup_timeout)
                self._begin_stop("startup_timeout",
                                 f"not ready within {self._spec.startup_timeout}s", _SHUTDOWN)
        elif isinstance(message, _StopStepDue):
            if message.step == self._stop_step and self._returncode is None:
                self._take_stop_step(message.step + 1)
        elif isinstance(message, _StdinBroken):
            if self._returncode is None and self._stop_step is None:
                # Usually the child is dying (SIGKILL closes its stdin before its exit is
                # reaped): wait for the exit, which tells callers why.
                self._after_grace("input_closed", f"stopped reading its input ({message.error})")
        elif isinstance(message, _PipeGraceOver):
            if self._returncode is None:
                self._log.warning(f"{message.cause}_but_running", detail=message.detail)
                if self._connection is not None:
                    self._connection.connection_lost(
                        ProcessUnavailable(f"child {self._pid()} {message.detail}")
                    )
                self._begin_stop(message.cause, message.detail, _CLOSE_STDIN)
        elif isinstance(message, _DrainTimedOut):
            self._finish()
        else:
            self._log.warning("unexpected_message", message=repr(message))
        return None

    def _became_ready(self, error: BaseException | None) -> None:
        if self._returncode is not None or self._stop_step is not None or self._ready:
            return
        popen, connection = self._popen, self._connection
        assert popen is not None and connection is not None
        if error is not None:
            self._log.warning("startup_failed", error=repr(error))
            self._begin_stop("startup_failed", f"start failed: {error}", _SHUTDOWN)
            return
        self._ready = True
        self._log.info("ready", seconds=round(time.monotonic() - self._launched_at, 4))
        self._tell_controller(ChildProcessCreated(self._generation, popen.pid, connection))

    def _stop_requested(self) -> None:
        self._requested = True
        if self._returncode is not None:
            return
        if self._stop_step is None:
            self._take_stop_step(_SHUTDOWN)

    def _protocol_failed(self, error: BaseException, sample: bytes) -> None:
        if isinstance(error, ProtocolError):
            self._log.warning("protocol_error", error=str(error), sample=sample)
        else:
            self._log.warning("connection_closed_by_request", error=str(error))
        if self._connection is not None:
            self._connection.connection_lost(ProcessUnavailable(
                f"child {self._pid()} broke the protocol: {error}"
            ))
        self._begin_stop("protocol_error", str(error), _CLOSE_STDIN)

    def _stream_closed(self, stream: str) -> None:
        self._open_streams.discard(stream)
        if stream == "stdout" and self._returncode is None:
            if self._connection is not None:
                # No answer can come any more, but the requests in flight fail only once we
                # know why (exit status or signal, stderr tail): in a moment, at the exit.
                self._connection.input_ended()
            # Normally the child is exiting; one that keeps running without stdout is no use,
            # but give it a moment to exit by itself before calling it that.
            self._after_grace("stdout_closed", "closed its stdout")
        if self._returncode is not None and not self._open_streams:
            self._finish()

    def _after_grace(self, cause: str, detail: str) -> None:
        """Give a child whose pipe broke a moment to exit by itself, then stop it."""
        me = self.actor_ref
        self._timers.append(call_later(
            min(_DRAIN_GRACE, self._spec.stop_timeout),
            lambda: _tell_quietly(me, _PipeGraceOver(cause, detail)),
        ))

    def _begin_stop(self, cause: str, detail: str, step: int) -> None:
        if self._returncode is not None or self._stop_step is not None:
            return
        self._cause, self._cause_detail = cause, detail
        self._take_stop_step(step)

    def _take_stop_step(self, step: int) -> None:
        popen = self._popen
        if popen is None or self._returncode is not None:
            return
        self._stop_step = step
        spec = self._spec
        if step == _SHUTDOWN:
            self._log.info("stop_step", step="shutdown")
            connection = self._connection
            if connection is not None and not connection.closed:
                # Written from a thread of its own: a child that stopped reading its stdin
                # leaves no room in the pipe, and the write would block this actor, and with
                # it every later step of the escalation.
                threading.Thread(
                    target=self._send_shutdown,
                    args=(connection,),
                    name=f"juicectl-{self._name}-{popen.pid}-shutdown",
                    daemon=True,
                ).start()
            wait = spec.stop_timeout
        elif step == _CLOSE_STDIN:
            self._log.info("stop_step", step="close_stdin")
            self._close_stdin()
            wait = spec.kill_timeout
        elif step == _TERMINATE:
            self._log.warning("stop_step", step="sigterm")
            self._signal_group(signal.SIGTERM)
            wait = spec.kill_timeout
        else:
            self._log.warning("stop_step", step="sigkill")
            self._signal_group(signal.SIGKILL)
            return
        me = self.actor_ref
        self._timers.append(call_later(wait, lambda: _tell_quietly(me, _StopStepDue(step))))

    @staticmethod
    def _send_shutdown(connection: Connection) -> None:
        # Its answer does not matter, the exit does; never wait here for a free slot.
        with contextlib.suppress(TooManyRequests):
            connection.call(Shutdown, wait_for_slot=False)

    def _close_stdin(self) -> None:
        with self._stdin_lock:
            popen = self._popen
            if popen is None or popen.stdin is None or self._stdin_fd is None:
                return
            self._stdin_fd = None
            if self._stdin_writers:
                # A write is blocked on this fd. Closed now, its number could be reused by
                # the next open() and the rest of that write would land in whatever file got
                # it. The last writer closes it (once the child reads or dies).
                self._stdin_close_deferred = True
                return
        self._close_stdin_file()

    def _close_stdin_file(self) -> None:
        popen = self._popen
        if popen is not None and popen.stdin is not None:
            with contextlib.suppress(OSError):
                popen.stdin.close()

    def _signal_group(self, signum: int) -> None:
        popen = self._popen
        if popen is None:
            return
        try:
            os.killpg(popen.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(OSError):
                os.kill(popen.pid, signum)

    def _pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    # --- exit --------------------------------------------------------------------------------

    def _child_exited(self, returncode: int) -> None:
        self._returncode = returncode
        for timer in self._timers:
            timer.cancel()
        # Grandchildren left in the child's group go with it: no orphans.
        self._signal_group(signal.SIGKILL)
        self._log.info("exited", returncode=returncode)
        if self._open_streams:
            me = self.actor_ref
            self._timers.append(
                call_later(_DRAIN_GRACE, lambda: _tell_quietly(me, _DrainTimedOut()))
            )
        else:
            self._finish()

    def _finish(self) -> None:
        if self._reported or self._returncode is None:
            return
        returncode = self._returncode
        with self._stderr_lock:
            tail = tuple(self._stderr_tail)
        status = returncode if returncode >= 0 else None
        signum = -returncode if returncode < 0 else None
        how = self._how(status)
        detail = self._cause_detail
        reason = TerminationReason(
            pid=self._pid(),
            exit_status=status,
            signal=signum,
            requested=self._requested,
            how=how,
            detail=detail,
            stderr_tail=tail,
        )
        if self._connection is not None:
            self._connection.connection_lost(
                ProcessUnavailable(reason.describe(), stderr_tail=tail)
            )
        self._close_stdin()
        self._report(reason)

    def _how(self, status: int | None) -> str:
        if self._cause is not None and not self._requested:
            return self._cause
        if self._stop_step is None:
            return "exited"
        if self._stop_step >= _KILL:
            return "killed"
        if self._stop_step >= _TERMINATE:
            return "terminated"
        if self._stop_step >= _CLOSE_STDIN:
            # It ignored Shutdown and ended only once its input ended: not clean.
            return "stdin_closed"
        return "clean" if status == 0 else "exited"

    def _report(self, reason: TerminationReason) -> None:
        if self._reported:
            return
        self._reported = True
        self._tell_controller(ChildProcessTerminated(self._generation, reason))
        self.stop()

    def _tell_controller(self, message: Any) -> None:
        try:
            self._controller.tell(message)
        except pykka.ActorDeadError:
            self._log.debug("controller_gone", message=type(message).__name__)

    def on_stop(self) -> None:
        self._cleanup()

    def on_failure(self, *args: Any) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        for timer in self._timers:
            timer.cancel()
        popen = self._popen
        if popen is not None and self._returncode is None:
            # Stopped without the child being reaped (e.g. pykka.ActorRegistry.stop_all()):
            # never leave it running.
            self._signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=5)
        if self._connection is not None:
            self._connection.connection_lost(ProcessUnavailable("the process actor stopped"))
        self._close_stdin()
        if not self._reported:
            self._reported = True
            self._tell_controller(ChildProcessTerminated(
                self._generation,
                TerminationReason(pid=self._pid(), exit_status=None, signal=None,
                                  requested=self._requested, how="killed",
                                  detail="the process actor stopped"),
            ))
