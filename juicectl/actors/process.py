"""The process actor: owns one child process, from launch to reaping.

One ``ProcessActor`` per child (per *generation*). It asks its launcher what to exec
(:mod:`juicectl.launch`), spawns it under a parent-death guard, runs plain threads that only
read and ``tell()`` what they saw (stdout into the connection's parser, stderr into the log,
the exit status), decides readiness, runs the ``prepare`` step, and reports to the controller:

* ``ChildProcessCreated(generation, pid, connection)`` once the child is ready;
* ``ChildProcessTerminated(generation, reason)`` once the child has exited *and been reaped*
  (or could not be launched), after which the actor stops itself.

Theory of operation
-------------------

The child's life is a **phase** (``Phase``), held by this actor alone and changed only by the
table ``LIFECYCLE``: ``(phase, event) -> (next phase, action)``. Every message this actor gets
is first turned into an ``Event`` (``_Ready`` without an error is ``probe_passed``, with one
``probe_failed``; a stop step's timer that belongs to an earlier phase is no event at all),
then ``on_receive`` looks up the row, sets the phase, runs the row's action (the effects of
that event: a log line, a note of why the stop began) and then, if the phase changed, the new
phase's entry effects (the stop step itself, the report). A pair that is not in the table is
an event with nothing to do in that phase (a late timer, a second stop): logged at debug.

::

    launching --launched--> probing --probe_passed--> ready
        |                      |                         | stop_asked
        | launch_failed        | probe_failed, startup_timed_out, stop_asked,
        | (stop_asked, startup_timed_out: before the launcher answered)
        v                      | protocol_failed, pipe_grace_over
    reported                   v                         v
        ^               stopping(close_stdin) <-- stopping(shutdown)   (step_due; or a
        |                      | step_due                             broken pipe from ready)
        |               stopping(sigterm) --step_due--> stopping(sigkill)
        |
        +--drained / drain_timed_out-- exited <--child_exited-- (any phase with a child)

Stopping escalates, each step bounded, and enters at the first step that makes sense::

    Shutdown  --stop_timeout-->  close stdin  --kill_timeout-->  SIGTERM to the group
              --kill_timeout-->  SIGKILL to the group

A ready child is asked for ``Shutdown`` first. A child that never became ready never answered
``Negotiate``, so it is not asked: its stop starts at closing its stdin (end of input ends a
Juice peer). A child that broke the protocol or closed its stdout cannot answer either, and
starts there too. Why the stop began (``startup_timeout``, ``protocol_error``, ...), whether
it was asked for, and the last step taken become the ``TerminationReason``.

Apart from the phase, two small things are touched by other threads, each under its own lock:
the write end of the child's stdin (a ``PipeTransport``: callers write requests on their own
threads through the connection; closing it waits for a write in progress) and the tail of the
child's stderr (appended by the stderr thread, read for the report). The other threads read
only what is set before they start (the ``Popen``, the connection, which is thread-safe on its
own). A launcher that ``waits`` (the ssh master connecting) is asked on a launch thread of
its own, which tells the answer back (``invoked``): the actor's thread never sits in a wait
that a stop cannot reach.

End of life: pykka may stop this actor before its child has been reported
(``ActorRegistry.stop_all()`` stops the newest actors first, so a process actor goes before
its controller). That is an explicit stop: the actor tells its controller ``_Close`` (the
application is ending: no termination event, no restart, no new child), then, since no
message reaches it any more, drives the same table with a clock of its own in ``on_stop``:
each stop step is taken as a ``StopChild`` would take it (``Shutdown`` first for a ready
child), and its time is waited for on the child's exit itself, bounded by the same timeouts.
The child's end is reported as usual (``clean`` when it obeyed ``Shutdown``). Before that, it
tells every other controller ``_Close`` too (``close_every_controller``), so that the children
of the whole application stop in parallel, not one ``stop_all()`` step after another.

The child runs in the process group of its parent-death guard (see
:mod:`juicectl.launch`), so signals reach its grandchildren, and the whole group dies with this
process, however it dies. No Python code runs between fork and exec.
"""

from __future__ import annotations

import contextlib
import enum
import os
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from juicectl._future import ReplyFuture
from juicectl._log import get_logger
from juicectl._pipe import PipeTransport
from juicectl._threads import note_actor_thread, start_daemon
from juicectl._timer import TimerHandle, call_later
from juicectl.connection import READ_SIZE, Connection, ConnectionLoss
from juicectl.exceptions import (
    COMMAND_TEXT_LIMIT,
    ProcessLaunchError,
    ProcessUnavailable,
    ProtocolError,
    TooManyRequests,
    command_text,
)
from juicectl.juice import Box, Negotiate, Shutdown, raw_command
from juicectl.launch import (
    Invocation,
    Launcher,
    SpawnedChild,
    launch_failure,
    spawn,
)
from juicectl.messages import (
    ChildProcessCreated,
    ChildProcessTerminated,
    StopChild,
    TerminationReason,
    _Close,
    _HurryStop,
)
from juicectl.policy import LaunchSpec

log = get_logger(__name__)

# How long to wait, after the child has exited, for its stdout/stderr to reach end of file
# (a grandchild may hold them open) before reporting the termination anyway.
_DRAIN_GRACE = 0.5
# Bytes of a stderr line kept in the log and in the tail.
_STDERR_LINE_MAX = 1024
_STDERR_TAIL_BYTES = 8192
# Bytes of a child's stray stdout shown in the error.
_STRAY_SAMPLE = 80
# Seconds to wait, once SIGKILL went to the group, for the kernel to end the child.
_SIGKILL_WAIT = 5.0

# The readiness probe: Negotiate, with every field of the answer kept as text, so that an
# answer spoiled by stray output can be shown as it came.
_RawNegotiate = raw_command("Negotiate")

_HINT = (
    "a worker's stdout belongs to the protocol: serve it with "
    "`python -m juicectl.child module:Class`, or call `juicectl.child.protect_stdio()` "
    "before anything prints"
)


def close_every_controller() -> None:
    """A process actor is stopped from outside: ``ActorRegistry.stop_all()`` (its ref is not
    handed out), which stops one actor at a time, newest first, each waiting for its child.
    Tell every controller to close now, as this actor tells its own: their children stop in
    parallel (each under its own escalation, driven by its own actor), and the stop that
    ``stop_all()`` makes of each later process actor finds its child stopped or stopping, so
    the whole takes one stop bound, not one per child. A closed controller ignores it."""
    for ref in pykka.ActorRegistry.get_by_class_name("ControllerActor"):
        _tell_quietly(ref, _Close(ReplyFuture()))


def _tell_quietly(ref: pykka.ActorRef[Any], message: Any) -> None:
    """Tell from a plain thread or a timer; an actor that already stopped needs no news."""
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)


# --- the lifecycle ----------------------------------------------------------------------------


class Phase(enum.Enum):
    """Where one child is in its life (see the module docstring)."""

    LAUNCHING = "launching"
    """Asking the launcher (``invoked`` is its answer), spawning. A launcher that ``waits``
    is asked on a thread of its own, and a stop or the startup timeout may end this phase
    before it answers."""
    PROBING = "probing"
    """Launched; the readiness probe and ``prepare`` are running."""
    READY = "ready"
    """``ChildProcessCreated`` was sent: callers use the connection."""
    STOPPING_SHUTDOWN = "stopping(shutdown)"
    """``Shutdown`` was sent; waiting up to ``stop_timeout``."""
    STOPPING_CLOSE_STDIN = "stopping(close_stdin)"
    """Its stdin was closed; waiting up to ``kill_timeout``."""
    STOPPING_SIGTERM = "stopping(sigterm)"
    """SIGTERM was sent to its group; waiting up to ``kill_timeout``."""
    STOPPING_SIGKILL = "stopping(sigkill)"
    """SIGKILL was sent to its group; waiting for the kernel to reap it."""
    EXITED = "exited"
    """Reaped; waiting (briefly) for its stdout and stderr to reach end of file."""
    REPORTED = "reported"
    """``ChildProcessTerminated`` was sent; the actor is stopping."""


class Event(enum.Enum):
    """What can happen to a child, as the lifecycle table sees it."""

    INVOKED = "invoked"
    LAUNCHED = "launched"
    LAUNCH_FAILED = "launch_failed"
    PROBE_PASSED = "probe_passed"
    PROBE_FAILED = "probe_failed"
    STARTUP_TIMED_OUT = "startup_timed_out"
    STOP_ASKED = "stop_asked"
    HURRY_ASKED = "hurry_asked"
    STEP_DUE = "step_due"
    PROTOCOL_FAILED = "protocol_failed"
    STDOUT_CLOSED = "stdout_closed"
    STDERR_CLOSED = "stderr_closed"
    STDIN_BROKEN = "stdin_broken"
    PIPE_GRACE_OVER = "pipe_grace_over"
    CHILD_EXITED = "child_exited"
    DRAINED = "drained"
    DRAIN_TIMED_OUT = "drain_timed_out"
    ACTOR_STOPPED = "actor_stopped"


#: The stop step each stopping phase takes on entry (the ``stop_step`` log line's value and
#: ``TerminationReason.stop_step``), in the order of the escalation.
STOP_STEPS: dict[Phase, str] = {
    Phase.STOPPING_SHUTDOWN: "shutdown",
    Phase.STOPPING_CLOSE_STDIN: "close_stdin",
    Phase.STOPPING_SIGTERM: "sigterm",
    Phase.STOPPING_SIGKILL: "sigkill",
}
_STEP_ORDER = list(STOP_STEPS.values())


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
class _Invoked:
    """The launcher answered: what to exec, or why it cannot be launched."""

    answer: Invocation | ProcessLaunchError


@dataclass(frozen=True)
class _StartupTimedOut:
    """``startup_timeout`` passed before the child got ready."""


@dataclass(frozen=True)
class _StopStepDue:
    """The time of the stop step taken on entering ``phase`` is up: take the next one."""

    phase: Phase


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


class _StderrTail:
    """The child's last stderr lines (at most ``lines`` and about 8 KiB): appended by the
    stderr thread, read by the actor for the report."""

    def __init__(self, lines: int) -> None:
        self._lock = threading.Lock()
        self._lines: deque[str] = deque(maxlen=lines)

    def append(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            while len(self._lines) > 1 and sum(map(len, self._lines)) > _STDERR_TAIL_BYTES:
                self._lines.popleft()

    def lines(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._lines)


class ProcessActor(pykka.ThreadingActor):
    """Owns one child process (one generation): launch, readiness, I/O threads, stop, reap.

    Args:
        controller: the controller actor to report to.
        generation: this child's generation number.
        spec: how to launch it and the timeouts.
        name: the controller's name, for logs.
        launcher: turns ``spec`` into what to exec (default: ``spec.launcher``; the
            controller passes the launcher it opened for itself).
    """

    use_daemon_thread = True

    def __init__(
        self,
        controller: pykka.ActorRef[Any],
        generation: int,
        spec: LaunchSpec,
        name: str = "juicectl",
        launcher: Launcher | None = None,
    ) -> None:
        super().__init__()
        self._controller = controller
        self._generation = generation
        self._spec = spec
        self._name = name
        self._launcher: Launcher = launcher if launcher is not None else spec.launcher
        self._log = log.bind(controller=name, generation=generation)

        # The lifecycle: this actor's thread only.
        self._phase = Phase.LAUNCHING
        self._events: deque[tuple[Event, Any]] = deque()
        self._dispatching = False
        self._child: SpawnedChild | None = None
        self._invocation: Invocation | None = None  # what was spawned
        self._became_ready = False
        self._connection: Connection | None = None
        self._deadline = 0.0  # monotonic time by which the child must be ready
        self._launched_at = 0.0
        self._timers: list[TimerHandle] = []
        self._open_streams = {"stdout", "stderr"}
        self._stream_stop: _StreamStop | None = None  # ends the reads of the child's output
        self._requested = False  # a StopChild arrived
        self._cause: str | None = None  # why we stopped it, when we did unasked
        self._cause_detail = ""
        self._last_step: str | None = None  # the last stop step taken
        self._returncode: int | None = None  # once EXITED
        # The whole report, when an action knows it (a failed launch, an actor stopped
        # from outside) rather than the exit telling it.
        self._final_reason: TerminationReason | None = None

        # Touched by other threads, each under its lock: the stdin writer (callers' threads
        # write, this actor closes) and the stderr tail.
        self._popen: subprocess.Popen[bytes] | None = None  # set once, before the threads
        self._stdin: PipeTransport | None = None  # the child's stdin, written by the connection
        self._stderr_tail = _StderrTail(spec.stderr_tail_lines)

    @classmethod
    def factory(
        cls, name: str, launcher: Launcher | None = None
    ) -> Callable[[pykka.ActorRef[Any], int, LaunchSpec], pykka.ActorRef[Any]]:
        """A process factory for ``ControllerActor``: starts one actor per child."""

        def start(
            controller: pykka.ActorRef[Any], generation: int, spec: LaunchSpec
        ) -> pykka.ActorRef[Any]:
            return cls.start(controller, generation, spec, name, launcher)

        return start

    # --- dispatch -----------------------------------------------------------------------

    def _dispatch(self, event: Event, payload: Any = None) -> None:
        """Run ``event`` through the table, then any event its effects raised, in order."""
        self._events.append((event, payload))
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._events:
                event, payload = self._events.popleft()
                row = LIFECYCLE.get((self._phase, event))
                if row is None:
                    self._log.debug("ignored", phase=self._phase.value, on=event.value)
                    continue
                old, (new, action) = self._phase, row
                self._phase = new
                if action is not None:
                    action(self, payload)
                if new is not old:
                    self._log.debug("phase", old=old.value, new=new.value, on=event.value)
                    entry = _ENTRY.get(new)
                    if entry is not None:
                        entry(self)
        except BaseException:
            self._events.clear()  # what a failed effect raised must not run later
            raise
        finally:
            self._dispatching = False

    def on_receive(self, message: Any) -> Any:
        kind = _EVENT_OF.get(type(message))
        if kind is None:
            self._log.warning("unexpected_message", message=repr(message))
        else:
            event = kind(self, message)
            if event is not None:
                self._dispatch(event, message)
        return None

    def _ready_event(self, message: _Ready) -> Event:
        return Event.PROBE_PASSED if message.error is None else Event.PROBE_FAILED

    def _stream_event(self, message: _StreamClosed) -> Event:
        return Event.STDOUT_CLOSED if message.stream == "stdout" else Event.STDERR_CLOSED

    def _step_event(self, message: _StopStepDue) -> Event | None:
        # A timer armed in an earlier phase is stale: the phase it was for is over.
        return Event.STEP_DUE if message.phase is self._phase else None

    # --- launch ------------------------------------------------------------------------

    def on_start(self) -> None:
        note_actor_thread(self.actor_urn)
        try:
            self._start()
        except Exception:
            # pykka would stop this actor without on_stop: report (and kill the child) first.
            self._log.exception("process_actor_failed", phase=self._phase.value)
            self._cleanup()

    def _start(self) -> None:
        spec = self._spec
        me = self.actor_ref
        # Armed before anything else: whatever happens below, no wait is unbounded.
        self._deadline = time.monotonic() + spec.startup_timeout
        self._timers.append(
            call_later(spec.startup_timeout, lambda: _tell_quietly(me, _StartupTimedOut()))
        )
        if getattr(self._launcher, "waits", False) and start_daemon(
            self._ask_launcher_for, f"juicectl-launch-{self._name}", me
        ):
            # Its answer comes back as a message: meanwhile a stop (stop_process(),
            # stop_all()) or the startup timer reaches this actor, which would otherwise
            # sit in on_start, deaf, until the launcher is done.
            return
        self._dispatch(Event.INVOKED, _Invoked(self._ask_launcher()))

    def _ask_launcher(self) -> Invocation | ProcessLaunchError:
        """What to exec, or why it cannot be launched. On this actor's thread, or on a
        launch thread of its own: reads only the spec and the launcher, set before."""
        spec = self._spec
        problem: Exception
        try:
            answer: object = self._launcher.invocation(spec)  # a user's launcher may err
        except ProcessLaunchError as failure:
            return failure
        except Exception as error:
            problem = error
        else:
            if isinstance(answer, Invocation):
                return answer
            problem = TypeError(
                f"the launcher {self._launcher!r} returned {answer!r}, not an Invocation"
            )
        # Any other failure of the launcher: a launch error in the same words as spawn's.
        command = tuple(spec.argv)
        return launch_failure(Invocation(command, spec.env, spec.cwd, command), problem)

    def _ask_launcher_for(self, me: pykka.ActorRef[Any]) -> None:
        _tell_quietly(me, _Invoked(self._ask_launcher()))

    def _invoked(self, message: _Invoked) -> None:
        answer = message.answer
        if isinstance(answer, ProcessLaunchError):
            self._dispatch(Event.LAUNCH_FAILED, answer)
            return
        self._invocation = answer
        try:
            child = spawn(answer)  # spawn's own errors are launch errors
        except ProcessLaunchError as failure:
            self._dispatch(Event.LAUNCH_FAILED, failure)
            return
        except Exception as error:
            self._dispatch(Event.LAUNCH_FAILED, launch_failure(answer, error))
            return
        self._dispatch(Event.LAUNCHED, child)

    def _launch_abandoned(self, detail: str, *, requested: bool) -> None:
        """The launcher is still at work (an ssh master connecting) when the launch must
        end: nothing was spawned, and its answer, if it comes, is never used."""
        where = getattr(self._launcher, "where", "")
        detail = f"{where}: {detail}" if where else detail
        self._log.warning("launch_abandoned", detail=detail, requested=requested)
        self._final_reason = TerminationReason(
            requested=requested, how="launch_failed", detail=detail,
            launch_error=OSError(detail),
        )

    def _launch_timed_out(self, _: Any) -> None:
        self._launch_abandoned(f"not launched within {self._spec.startup_timeout}s",
                               requested=False)

    def _stopped_before_launch(self, _: Any) -> None:
        self._requested = True
        self._launch_abandoned("stopped before it was launched", requested=True)

    def _launched(self, child: SpawnedChild) -> None:
        self._child = child
        self._popen = popen = child.popen
        assert popen.stdin and popen.stdout and popen.stderr
        self._launched_at = time.monotonic()
        self._stdin = PipeTransport(popen.stdin)
        self._log = self._log.bind(pid=popen.pid)
        where = self._invocation.where if self._invocation is not None else ""
        self._log.info("launched", argv=list(self._spec.argv), pgid=child.pgid,
                       guarded=child.guard is not None, **({"where": where} if where else {}))

    def _launch_failed(self, failure: ProcessLaunchError) -> None:
        argv: list[str] | str = list(self._spec.argv)
        if len(repr(argv)) > COMMAND_TEXT_LIMIT:
            argv = command_text(self._spec.argv)  # an argument list too long to run
        self._log.warning("launch_failed", argv=argv, cwd=self._spec.cwd, error=str(failure))
        self._final_reason = TerminationReason(
            how="launch_failed", detail=str(failure), launch_error=failure.os_error
        )

    def _enter_probing(self) -> None:
        popen = self._popen
        assert popen is not None
        spec = self._spec
        watching = False
        readers = 0  # of the two that the stream stop counts, started so far
        try:
            self._connection = self._open_connection()
            self._stream_stop = _StreamStop.open(readers=2)
            for target, stream_name in (
                (self._watch_exit, "exit"),
                (self._read_stdout, "stdout"),
                (self._read_stderr, "stderr"),
            ):
                threading.Thread(
                    target=target,
                    name=f"juicectl-{self._name}-{popen.pid}-{stream_name}",
                    daemon=True,
                ).start()
                watching = True
                readers += stream_name != "exit"
            if spec.readiness == "connected" and spec.prepare is None:
                self._dispatch(Event.PROBE_PASSED, _Ready(None))
            else:
                threading.Thread(
                    target=self._get_ready,
                    name=f"juicectl-{self._name}-{popen.pid}-startup",
                    daemon=True,
                ).start()
        except Exception as error:  # e.g. RuntimeError: can't start new thread
            stop = self._stream_stop
            if stop is not None:
                for _ in range(2 - readers):
                    stop.reader_done()  # for a reader that never started
            self._dispatch(Event.PROBE_FAILED, _Ready(error))
            if not watching:
                # Nothing would ever report its exit: end it here, and wait (bounded).
                assert self._child is not None
                self._child.signal_group(signal.SIGKILL)
                with contextlib.suppress(Exception):
                    self._dispatch(Event.CHILD_EXITED, _ChildExited(popen.wait(timeout=5)))

    def _open_connection(self) -> Connection:
        popen, stdin = self._popen, self._stdin
        assert popen is not None and stdin is not None
        return Connection(
            stdin,
            pid=popen.pid,
            generation=self._generation,
            name=self._name,
            options=self._spec.connection,
            on_lost=self._connection_lost_because,
        )

    def _get_ready(self) -> None:
        """Readiness probe, then ``prepare``: on a thread of its own (they block)."""
        connection = self._connection
        assert connection is not None
        deadline = self._deadline
        error: BaseException | None = None
        try:
            if self._spec.readiness == "negotiate":
                # Bounded by startup_timeout, not by the connection's request_timeout (meant
                # for calls to a running child, and often shorter than a start).
                remaining = max(0.001, deadline - time.monotonic())
                fields = connection.call(_RawNegotiate, versions="1", timeout=remaining).get(
                    timeout=remaining
                )
                version = _negotiated_version(connection.pid, fields)
                if version != 1:
                    raise ProcessUnavailable(
                        f"child {connection.pid} negotiated version {version!r}, not 1"
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
        popen, connection, stop = self._popen, self._connection, self._stream_stop
        assert popen is not None and popen.stdout is not None and connection is not None
        try:
            connection.serve_reads(popen.stdout.fileno(), stop.fd if stop is not None else -1)
            with contextlib.suppress(OSError):
                popen.stdout.close()
        finally:
            if stop is not None:
                stop.reader_done()
        _tell_quietly(self.actor_ref, _StreamClosed("stdout"))

    def _read_stderr(self) -> None:
        stop = self._stream_stop
        try:
            self._read_stderr_until_end(stop.fd if stop is not None else -1)
        finally:
            if stop is not None:
                stop.reader_done()
        _tell_quietly(self.actor_ref, _StreamClosed("stderr"))

    def _read_stderr_until_end(self, stop_fd: int) -> None:
        popen = self._popen
        assert popen is not None and popen.stderr is not None
        fd = popen.stderr.fileno()
        stderr_log = log.bind(controller=self._name, generation=self._generation, pid=popen.pid)
        tail = self._stderr_tail
        partial = b""
        watch = select.poll()
        watch.register(fd, select.POLLIN)
        if stop_fd >= 0:
            watch.register(stop_fd, select.POLLIN)
        while True:
            try:
                if any(ready == stop_fd for ready, _ in watch.poll()):
                    data = b""  # given up: something else holds the pipe open
                else:
                    data = os.read(fd, READ_SIZE)
            except OSError:
                data = b""
            if not data:
                if partial:
                    _stderr_line(stderr_log, tail, partial)
                break
            lines = (partial + data).split(b"\n")
            partial = lines.pop()
            if len(partial) > _STDERR_LINE_MAX:  # an endless line: log it in pieces
                lines.append(partial)
                partial = b""
            for line in lines:
                _stderr_line(stderr_log, tail, line)
        with contextlib.suppress(OSError):
            popen.stderr.close()

    def _watch_exit(self) -> None:
        popen = self._popen
        assert popen is not None
        _tell_quietly(self.actor_ref, _ChildExited(popen.wait()))

    def _connection_lost_because(self, loss: ConnectionLoss) -> None:
        # From the thread that saw it (a reader, a writer, the responder's): tell the actor.
        if loss.cause == "write_failed":
            _tell_quietly(self.actor_ref, _StdinBroken(str(loss.error)))
        else:
            _tell_quietly(self.actor_ref, _ProtocolFailed(loss.error, loss.sample))

    # --- actions: the effects of one event (the table has already set the phase) ------------

    def _probe_failed(self, message: _Ready) -> None:
        self._log.warning("startup_failed", error=repr(message.error))
        self._begin_stop("startup_failed", f"start failed: {message.error}",
                         Phase.STOPPING_CLOSE_STDIN)

    def _startup_timed_out(self, _: Any) -> None:
        self._log.warning("startup_timeout", timeout=self._spec.startup_timeout)
        self._begin_stop("startup_timeout", f"not ready within {self._spec.startup_timeout}s",
                         Phase.STOPPING_CLOSE_STDIN)

    def _stop_asked(self, _: Any) -> None:
        self._requested = True

    def _hurried(self, _: Any) -> None:
        self._log.info("stop_hurried", after=self._last_step)

    def _protocol_failed_at_startup(self, message: _ProtocolFailed) -> None:
        error, sample = message.error, message.sample
        if not isinstance(error, ProtocolError):
            self._protocol_failed(error, sample)
            return
        detail = (
            f"it wrote to its stdout what is not Juice before it was ready ({error}); "
            f"the first bytes: {sample[:_STRAY_SAMPLE]!r}; {_HINT}"
        )
        self._log.warning("protocol_error", error=str(error), sample=sample, during="startup")
        if self._connection is not None:
            self._connection.connection_lost(ProcessUnavailable(f"child {self._pid()} {detail}"))
        self._begin_stop("protocol_error", detail, Phase.STOPPING_CLOSE_STDIN)

    def _protocol_failed_message(self, message: _ProtocolFailed) -> None:
        self._protocol_failed(message.error, message.sample)

    def _protocol_failed(self, error: BaseException, sample: bytes) -> None:
        if isinstance(error, ProtocolError):
            self._log.warning("protocol_error", error=str(error), sample=sample)
        else:
            self._log.warning("connection_closed_by_request", error=str(error))
        if self._connection is not None:
            self._connection.connection_lost(ProcessUnavailable(
                f"child {self._pid()} broke the protocol: {error}"
            ))
        self._begin_stop("protocol_error", str(error), Phase.STOPPING_CLOSE_STDIN)

    def _stdout_closed(self, _: Any) -> None:
        self._open_streams.discard("stdout")
        # No answer can come any more (the connection knows: it read the end), but the
        # requests in flight fail only once we know why (exit status or signal, stderr
        # tail): in a moment, at the exit.
        if self._phase in (Phase.PROBING, Phase.READY):
            # Normally the child is exiting; one that keeps running without stdout is no
            # use, but give it a moment to exit by itself before calling it that. (While it
            # is being stopped, the escalation bounds the wait already.)
            self._after_grace("stdout_closed", "closed its stdout")

    def _stderr_closed(self, _: Any) -> None:
        self._open_streams.discard("stderr")

    def _stream_closed_after_exit(self, message: _StreamClosed) -> None:
        self._open_streams.discard(message.stream)
        if not self._open_streams:
            self._dispatch(Event.DRAINED)

    def _stdin_broken(self, message: _StdinBroken) -> None:
        # Usually the child is dying (SIGKILL closes its stdin before its exit is reaped):
        # wait for the exit, which tells callers why.
        self._after_grace("input_closed", f"stopped reading its input ({message.error})")

    def _pipe_grace_over(self, message: _PipeGraceOver) -> None:
        self._log.warning(f"{message.cause}_but_running", detail=message.detail)
        if self._connection is not None:
            self._connection.connection_lost(
                ProcessUnavailable(f"child {self._pid()} {message.detail}")
            )
        self._begin_stop(message.cause, message.detail, Phase.STOPPING_CLOSE_STDIN)

    def _child_exited(self, message: _ChildExited) -> None:
        self._returncode = message.returncode

    def _stopped_from_outside(self, _: Any) -> None:
        # The actor stopped before its child was reported. A child reaped by the stop in
        # on_stop (_stop_in_place) is reported as its exit says; one still running (the actor
        # crashed, or SIGKILL did not end it in time) is never left running.
        returncode = self._returncode
        if returncode is not None and self._requested:
            return
        if self._child is None:
            self._launch_abandoned("its process actor stopped before the launch",
                                   requested=self._requested)
            return
        if returncode is None:
            self._child.signal_group(signal.SIGKILL)
            with contextlib.suppress(Exception):
                returncode = self._child.popen.wait(timeout=_SIGKILL_WAIT)
        self._final_reason = TerminationReason(
            pid=self._pid(),
            exit_status=returncode if returncode is not None and returncode >= 0 else None,
            signal=-returncode if returncode is not None and returncode < 0 else None,
            requested=self._requested,
            how="killed",
            detail="the process actor stopped",
            stderr_tail=self._stderr_tail.lines(),
            stop_step=self._last_step,
        )

    def _after_grace(self, cause: str, detail: str) -> None:
        """Give a child whose pipe broke a moment to exit by itself, then stop it."""
        me = self.actor_ref
        self._timers.append(call_later(
            min(_DRAIN_GRACE, self._spec.stop_timeout),
            lambda: _tell_quietly(me, _PipeGraceOver(cause, detail)),
        ))

    def _begin_stop(self, cause: str, detail: str, step: Phase) -> None:
        """Note why the stop began, if this event began it. The table has already entered the
        stop at ``step``; a child that was stopping already keeps its first reason (every stop
        is asked for or has a cause)."""
        del step  # the table's to decide
        if self._cause is None and not self._requested:
            self._cause, self._cause_detail = cause, detail

    # --- entry effects: what entering a phase does ----------------------------------------

    def _enter_ready(self) -> None:
        child, connection = self._child, self._connection
        assert child is not None and connection is not None
        self._became_ready = True
        self._log.info("ready", seconds=round(time.monotonic() - self._launched_at, 4))
        self._tell_controller(ChildProcessCreated(self._generation, child.pid, connection))

    def _enter_stop_step(self) -> None:
        child = self._child
        assert child is not None
        step = STOP_STEPS[self._phase]
        self._last_step = step
        spec = self._spec
        if self._connection is not None:
            # Nothing new goes to a child on its way out: a request written after Shutdown
            # would only fail at the exit (a pool's held ones go to another worker instead).
            self._connection.stop_taking(ProcessUnavailable(
                f"child {child.pid} is stopping ({self._cause or 'a stop was asked for'}); "
                "the request was not sent"
            ))
        if step == "shutdown":
            self._log.info("stop_step", step=step)
            connection = self._connection
            wait = spec.stop_timeout
            # Written from a thread of its own: a child that stopped reading its stdin leaves
            # no room in the pipe, and the write would block this actor, and with it every
            # later step of the escalation.
            if connection is not None and not connection.closed and not start_daemon(
                self._send_shutdown, f"juicectl-{self._name}-{child.pid}-shutdown", connection
            ):
                # No thread to be had (at interpreter exit, on Python 3.12). A pipe with room
                # takes the small Shutdown box at once, so this actor writes it; otherwise the
                # next step, end of input, is the polite stop, and it comes at once.
                if self._stdin is not None and self._stdin.has_room():
                    self._send_shutdown(connection)
                else:
                    self._log.info("stop_step_skipped", step=step, why="no thread to write it")
                    wait = 0.0
        elif step == "close_stdin":
            self._log.info("stop_step", step=step)
            self._close_stdin()
            wait = spec.kill_timeout
        elif step == "sigterm":
            self._log.warning("stop_step", step=step)
            child.signal_group(signal.SIGTERM)
            wait = spec.kill_timeout
        else:
            self._log.warning("stop_step", step=step)
            child.signal_group(signal.SIGKILL)
            return
        me, phase = self.actor_ref, self._phase
        self._timers.append(call_later(wait, lambda: _tell_quietly(me, _StopStepDue(phase))))

    @staticmethod
    def _send_shutdown(connection: Connection) -> None:
        # Its answer does not matter, the exit does; never wait here for a free slot.
        with contextlib.suppress(TooManyRequests):
            connection.call(Shutdown, wait_for_slot=False)

    def _enter_exited(self) -> None:
        for timer in self._timers:
            timer.cancel()
        child = self._child
        assert child is not None and self._returncode is not None
        # Grandchildren left in the child's group go with it (no orphans), and its guard is
        # reaped.
        child.release()
        self._log.info("exited", returncode=self._returncode)
        if self._connection is not None and "stdout" in self._open_streams:
            self._connection.child_exited()  # its end of file, read now, not at a look
        if self._open_streams:
            me = self.actor_ref
            self._timers.append(
                call_later(_DRAIN_GRACE, lambda: _tell_quietly(me, _DrainTimedOut()))
            )
        else:
            self._dispatch(Event.DRAINED)

    def _enter_reported(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._open_streams and self._stream_stop is not None:
            # The child has exited and its grace is over, and still no end of file: a
            # process that left its group (a daemon) holds the pipes. Reading on would keep
            # two threads and their pipes for as long as it lives.
            self._log.info("streams_abandoned", streams=sorted(self._open_streams))
            self._stream_stop.stop()
        reason = self._final_reason or self._termination_reason()
        # The controller hears first: a caller whose request fails below and retries at once
        # sends its GetProcess behind this report, so it never meets the dead child again.
        self._tell_controller(ChildProcessTerminated(self._generation, reason))
        if self._connection is not None:
            self._connection.connection_lost(
                ProcessUnavailable(reason.describe(), stderr_tail=reason.stderr_tail)
            )
        self._close_stdin()
        if self._child is not None:
            self._child.release()
        with contextlib.suppress(pykka.ActorDeadError):  # already stopping (on_stop)
            self.stop()

    # --- helpers -----------------------------------------------------------------------

    def _termination_reason(self) -> TerminationReason:
        returncode = self._returncode
        status = returncode if returncode is not None and returncode >= 0 else None
        signum = -returncode if returncode is not None and returncode < 0 else None
        detail = self._cause_detail
        tail = self._stderr_tail.lines()
        read_exit = self._invocation.read_exit if self._invocation is not None else None
        if read_exit is not None and returncode is not None:
            # A launcher that ran it elsewhere knows what the local status means there.
            reading = read_exit(returncode, tail, self._became_ready)
            status, signum = reading.exit_status, reading.signal
            if reading.launch_error is not None and not self._became_ready:
                return TerminationReason(
                    pid=self._pid(), exit_status=status, signal=signum,
                    requested=self._requested, how="launch_failed", detail=reading.detail,
                    launch_error=reading.launch_error, stderr_tail=tail,
                    stop_step=self._last_step,
                )
            detail = f"{detail}; {reading.detail}" if detail and reading.detail else (
                detail or reading.detail
            )
        return TerminationReason(
            pid=self._pid(),
            exit_status=status,
            signal=signum,
            requested=self._requested,
            how=self._how(status, signum),
            detail=detail,
            stderr_tail=tail,
            stop_step=self._last_step,
        )

    def _how(self, status: int | None, signum: int | None) -> str:
        """The ``TerminationReason.how`` vocabulary (see ``juicectl.messages``)."""
        if self._cause is not None and not self._requested:
            return self._cause
        step = self._last_step
        sent = set()
        if step is not None and _STEP_ORDER.index(step) >= _STEP_ORDER.index("sigterm"):
            sent.add(int(signal.SIGTERM))
        if step == "sigkill":
            sent.add(int(signal.SIGKILL))
        if signum is not None and signum not in sent:
            return "signaled"  # a signal juicectl did not send
        if step is None:
            return "exited"
        if step == "sigkill":
            return "killed"
        if step == "sigterm":
            return "terminated"
        if step == "close_stdin":
            # It ignored Shutdown (or was not asked) and ended once its input ended.
            return "stdin_closed"
        return "clean" if status == 0 else "exited"

    def _close_stdin(self) -> None:
        # Never under a write in progress: the transport leaves that to the last writer.
        if self._stdin is not None:
            self._stdin.close()

    def _pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def _tell_controller(self, message: Any) -> None:
        try:
            self._controller.tell(message)
        except pykka.ActorDeadError:
            self._log.debug("controller_gone", message=type(message).__name__)

    def on_stop(self) -> None:
        """Stopped by pykka: stop a child not yet reported, as ``StopChild`` would, then
        report (see the module's end of life)."""
        if self._phase is not Phase.REPORTED:
            self._stop_in_place()
        self._cleanup()

    def _stop_in_place(self) -> None:
        popen = self._popen
        if not self._requested:
            self._log.info("stopped_from_outside", phase=self._phase.value)
            self._cause_detail = "its process actor was stopped"
        # Even while a stop asked for is under way: its controller still closes (keeping the
        # StopResult for its handle), and every other controller stops its child now, not
        # when stop_all() comes to it. Also while the launcher is still at work: no restart.
        self._tell_controller(_Close(ReplyFuture()))
        close_every_controller()
        if popen is None:
            return  # nothing was spawned: ACTOR_STOPPED reports the launch abandoned
        self._dispatch(Event.STOP_ASKED)
        while self._phase in STOP_STEPS:
            try:
                returncode = popen.wait(timeout=self._step_time())
            except subprocess.TimeoutExpired:
                if self._phase is Phase.STOPPING_SIGKILL:
                    return  # _stopped_from_outside waits once more, then reports it killed
                self._dispatch(Event.STEP_DUE)
            else:
                self._dispatch(Event.CHILD_EXITED, _ChildExited(returncode))

    def _step_time(self) -> float:
        """How long the stop step of the current phase waits for the exit."""
        if self._phase is Phase.STOPPING_SHUTDOWN:
            return self._spec.stop_timeout
        if self._phase is Phase.STOPPING_SIGKILL:
            return _SIGKILL_WAIT
        return self._spec.kill_timeout

    def on_failure(self, *args: Any) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        if self._phase is not Phase.REPORTED:
            self._dispatch(Event.ACTOR_STOPPED)
        for timer in self._timers:
            timer.cancel()
        if self._connection is not None:
            self._connection.connection_lost(ProcessUnavailable("the process actor stopped"))
        self._close_stdin()


def _stderr_line(stderr_log: Any, tail: _StderrTail, raw: bytes) -> None:
    text = raw[:_STDERR_LINE_MAX].rstrip(b"\r").decode("utf-8", "replace")
    stderr_log.info("child_stderr", line=text)
    tail.append(text)


class _StreamStop:
    """Ends the reads of a child's stdout and stderr that no end of file will end.

    A pipe whose write end closes wakes every ``poll()`` that watches its read end (``fd``),
    so the readers watch it beside their stream. Each reader says when it is done; the last
    one closes what is left of the pipe (a reader may still be watching ``fd`` until then).
    """

    def __init__(self, read_fd: int, write_fd: int, readers: int) -> None:
        self.fd = read_fd
        self._write_fd = write_fd
        self._readers = readers
        self._lock = threading.Lock()  # the two ends' closing, from any of the threads

    @classmethod
    def open(cls, readers: int) -> _StreamStop | None:
        """A stop for ``readers`` reader threads; None without a file descriptor to spare
        (the readers then read until end of file, as before)."""
        try:
            read_fd, write_fd = os.pipe()
        except OSError:
            return None
        return cls(read_fd, write_fd, readers)

    def stop(self) -> None:
        """End the reads: every reader's next wait returns (idempotent)."""
        with self._lock:
            if self._write_fd >= 0:
                os.close(self._write_fd)
                self._write_fd = -1

    def reader_done(self) -> None:
        """A reader has ended; the last one closes the pipe."""
        with self._lock:
            self._readers -= 1
            if self._readers:
                return
            if self._write_fd >= 0:
                os.close(self._write_fd)
                self._write_fd = -1
            os.close(self.fd)


def _negotiated_version(pid: int, fields: dict[str, str]) -> int:
    """The version in a ``Negotiate`` answer; an answer without one is stray output, and one
    whose version is not a number says so."""
    if "version" in fields:
        try:
            return int(Negotiate.parse_response(Box(fields))["version"])
        except Exception:
            raise ProcessUnavailable(
                f"child {pid} answered Negotiate with a version that is not a whole number: "
                f"{fields['version'][:_STRAY_SAMPLE]!r}"
            ) from None
    stray = next(
        (f"{key}: {value}" for key, value in fields.items() if key != "version"),
        "",
    )
    raise ProcessUnavailable(
        f"child {pid} answered Negotiate without a version: it wrote to its stdout before "
        f"the protocol started; the answer began with {stray[:_STRAY_SAMPLE]!r} (as parsed); "
        f"{_HINT}"
    )


# --- the table -------------------------------------------------------------------------------

_A = ProcessActor
_L, _P, _R = Phase.LAUNCHING, Phase.PROBING, Phase.READY
_SD, _SC = Phase.STOPPING_SHUTDOWN, Phase.STOPPING_CLOSE_STDIN
_ST, _SK = Phase.STOPPING_SIGTERM, Phase.STOPPING_SIGKILL
_X, _D = Phase.EXITED, Phase.REPORTED
_E = Event
_Action = Callable[[ProcessActor, Any], None]

#: ``(phase, event) -> (next phase, action)``: every decision about a child's phase. A pair
#: that is not here changes nothing (the event is ignored in that phase).
LIFECYCLE: dict[tuple[Phase, Event], tuple[Phase, _Action | None]] = {
    # Launching: the launcher's answer is spawned; a launcher that waits (an ssh master
    # connecting) is asked on a thread, so a stop or the startup timer may come first.
    (_L, _E.INVOKED): (_L, _A._invoked),
    (_L, _E.LAUNCHED): (_P, _A._launched),
    (_L, _E.LAUNCH_FAILED): (_D, _A._launch_failed),
    (_L, _E.STOP_ASKED): (_D, _A._stopped_before_launch),
    (_L, _E.STARTUP_TIMED_OUT): (_D, _A._launch_timed_out),
    # Starting: not ready yet, so never asked for Shutdown.
    (_P, _E.PROBE_PASSED): (_R, None),
    (_P, _E.PROBE_FAILED): (_SC, _A._probe_failed),
    (_P, _E.STARTUP_TIMED_OUT): (_SC, _A._startup_timed_out),
    (_P, _E.STOP_ASKED): (_SC, _A._stop_asked),
    (_P, _E.PROTOCOL_FAILED): (_SC, _A._protocol_failed_at_startup),
    (_P, _E.STDOUT_CLOSED): (_P, _A._stdout_closed),
    (_P, _E.STDERR_CLOSED): (_P, _A._stderr_closed),
    (_P, _E.STDIN_BROKEN): (_P, _A._stdin_broken),
    (_P, _E.PIPE_GRACE_OVER): (_SC, _A._pipe_grace_over),
    (_P, _E.CHILD_EXITED): (_X, _A._child_exited),
    # Ready: a stop asks for Shutdown first; a broken pipe goes straight to closing stdin.
    (_R, _E.STOP_ASKED): (_SD, _A._stop_asked),
    (_R, _E.PROTOCOL_FAILED): (_SC, _A._protocol_failed_message),
    (_R, _E.STDOUT_CLOSED): (_R, _A._stdout_closed),
    (_R, _E.STDERR_CLOSED): (_R, _A._stderr_closed),
    (_R, _E.STDIN_BROKEN): (_R, _A._stdin_broken),
    (_R, _E.PIPE_GRACE_OVER): (_SC, _A._pipe_grace_over),
    (_R, _E.CHILD_EXITED): (_X, _A._child_exited),
    # Stopping: each step's time up takes the next; the first reason for the stop stays.
    (_SD, _E.STEP_DUE): (_SC, None),
    (_SC, _E.STEP_DUE): (_ST, None),
    (_ST, _E.STEP_DUE): (_SK, None),
    # A close interrupted (Ctrl-C) hurries the stop: SIGTERM now, not after the polite steps.
    (_SD, _E.HURRY_ASKED): (_ST, _A._hurried),
    (_SC, _E.HURRY_ASKED): (_ST, _A._hurried),
    # Exited: wait for both pipes to reach end of file (bounded), then report.
    (_X, _E.STDOUT_CLOSED): (_X, _A._stream_closed_after_exit),
    (_X, _E.STDERR_CLOSED): (_X, _A._stream_closed_after_exit),
    (_X, _E.STOP_ASKED): (_X, _A._stop_asked),
    (_X, _E.DRAINED): (_D, None),
    (_X, _E.DRAIN_TIMED_OUT): (_D, None),
}
for _stopping in STOP_STEPS:
    LIFECYCLE[(_stopping, _E.STOP_ASKED)] = (_stopping, _A._stop_asked)
    LIFECYCLE[(_stopping, _E.PROTOCOL_FAILED)] = (_stopping, _A._protocol_failed_message)
    LIFECYCLE[(_stopping, _E.STDOUT_CLOSED)] = (_stopping, _A._stdout_closed)
    LIFECYCLE[(_stopping, _E.STDERR_CLOSED)] = (_stopping, _A._stderr_closed)
    LIFECYCLE[(_stopping, _E.CHILD_EXITED)] = (_X, _A._child_exited)
for _phase in Phase:
    if _phase is not _D:
        LIFECYCLE[(_phase, _E.ACTOR_STOPPED)] = (_D, _A._stopped_from_outside)

# What entering a phase does (after the row's action).
_ENTRY: dict[Phase, Callable[[ProcessActor], None]] = {
    _P: _A._enter_probing,
    _R: _A._enter_ready,
    **{phase: _A._enter_stop_step for phase in STOP_STEPS},
    _X: _A._enter_exited,
    _D: _A._enter_reported,
}

# How each message is turned into an event (None: no event, e.g. a stale timer).
_EVENT_OF: dict[type, Callable[[ProcessActor, Any], Event | None]] = {
    _Invoked: lambda actor, message: Event.INVOKED,
    _Ready: _A._ready_event,
    StopChild: lambda actor, message: Event.STOP_ASKED,
    _HurryStop: lambda actor, message: Event.HURRY_ASKED,
    _ChildExited: lambda actor, message: Event.CHILD_EXITED,
    _StreamClosed: _A._stream_event,
    _ProtocolFailed: lambda actor, message: Event.PROTOCOL_FAILED,
    _StartupTimedOut: lambda actor, message: Event.STARTUP_TIMED_OUT,
    _StopStepDue: _A._step_event,
    _StdinBroken: lambda actor, message: Event.STDIN_BROKEN,
    _PipeGraceOver: lambda actor, message: Event.PIPE_GRACE_OVER,
    _DrainTimedOut: lambda actor, message: Event.DRAIN_TIMED_OUT,
}
