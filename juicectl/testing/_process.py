"""``InMemoryProcess``: the process actor of a child served in memory.

A ``FakeController`` is a ``ProcessController`` started with a process factory that makes one
of these per child instead of a ``ProcessActor``: each owns an :class:`InMemoryChild` (the
worker served by the real child runtime on threads of this process) and talks to the
``ControllerActor`` with the same messages, so the controller cannot tell the difference.

Theory of operation
-------------------

An ``InMemoryProcess`` actor owns one in-memory child (one generation). Its **phase** is
changed only by the table ``LIFECYCLE``: ``(phase, event) -> (next phase, action)``; the
action runs once the phase is set, then, if the phase changed, the new phase's entry effects.
It is the process actor's lifecycle, minus what only a process has::

    starting --probe_passed--> ready --stop_asked--> stopping(shutdown)
        |  probe_failed, startup_timed_out,            | step_due
        |  stop_asked                                  v
        +------------------------------------> stopping(close_stdin) --step_due--> reported
        |                                                                            ^
        +-- ended (the conversation is over), killed, launch_failed, actor_stopped --+
                                                        (from any phase)

* **starting**: the child is served; the readiness probe (``Negotiate``, unless readiness is
  ``"connected"``) and ``prepare`` run on a thread of their own, bounded by
  ``startup_timeout``. On entering **ready** the controller is told ``ChildProcessCreated``
  (pid 0: there is no process).
* **Stopping** takes the process actor's steps: ``Shutdown`` to a ready child (bounded by
  ``stop_timeout``), then closing its input (bounded by ``kill_timeout``). A thread cannot be
  killed, so the last step (SIGTERM and SIGKILL for a process) is one: the child is given up
  as killed (``InMemoryChild.kill``: its pipes close and its threads end, but a handler still
  running finishes on its own), its connection lost.
* **killed** is ``FakeController.kill_child()`` or a scripted ``CRASH``: the child dies
  as a ``kill -9`` from outside would kill a process (``how="signaled"``, SIGKILL).
* On entering **reported** the controller is told ``ChildProcessTerminated`` *before* the
  connection is marked lost, so a caller whose request failed because the child died finds the
  controller knowing it: the next ``mode``, ``stats()`` or ``get_process()`` is handled after
  the termination. Then the actor stops.

Stopped from outside (``ActorRegistry.stop_all()``), it does what the ``ProcessActor`` does:
it tells its controller ``_Close`` (and every other controller: ``close_every_controller``)
and takes the stop steps itself in ``on_stop``, waiting on the end of the conversation.
"""

from __future__ import annotations

import contextlib
import enum
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from juicectl._future import ReplyFuture
from juicectl._log import get_logger
from juicectl._timer import TimerHandle, call_later
from juicectl.actors.process import close_every_controller
from juicectl.connection import Connection
from juicectl.exceptions import ProcessUnavailable, TooManyRequests
from juicectl.juice import Negotiate, Shutdown
from juicectl.messages import (
    ChildProcessCreated,
    ChildProcessTerminated,
    StopChild,
    TerminationReason,
    _Close,
    _HurryStop,
)
from juicectl.policy import LaunchSpec
from juicectl.testing._children import InMemoryChild

__all__ = ["LIFECYCLE", "Event", "InMemoryProcess", "Phase"]

log = get_logger(__name__)

#: How long a thread that reported the end of the conversation, or a kill, waits for the
#: process actor to have told the controller (a bound: it never takes this long).
REPORT_WAIT = 10.0

class Phase(enum.Enum):
    """Where one in-memory child is in its life (see the module docstring)."""

    STARTING = "starting"
    READY = "ready"
    STOPPING_SHUTDOWN = "stopping(shutdown)"
    STOPPING_CLOSE_STDIN = "stopping(close_stdin)"
    REPORTED = "reported"


class Event(enum.Enum):
    """What can happen to an in-memory child, as ``LIFECYCLE`` sees it."""

    LAUNCH_FAILED = "launch_failed"
    PROBE_PASSED = "probe_passed"
    PROBE_FAILED = "probe_failed"
    STARTUP_TIMED_OUT = "startup_timed_out"
    STOP_ASKED = "stop_asked"
    STEP_DUE = "step_due"
    ENDED = "ended"
    KILLED = "killed"
    ACTOR_STOPPED = "actor_stopped"


@dataclass(frozen=True)
class _Ready:
    """The readiness probe and ``prepare`` are done (``error`` if one failed)."""

    error: BaseException | None


@dataclass(frozen=True)
class _StartupTimedOut:
    """``startup_timeout`` passed before the child got ready."""


@dataclass(frozen=True)
class _StepDue:
    """The time of the stop step taken on entering ``phase`` is up."""

    phase: Phase


@dataclass(frozen=True)
class _Ended:
    """The conversation is over (told by the reader's thread, which waits for ``done``)."""

    done: threading.Event


@dataclass(frozen=True)
class _Kill:
    """Kill the child, as SIGKILL from outside kills a process; set ``done`` once reported."""

    detail: str
    done: threading.Event


def _tell_quietly(ref: pykka.ActorRef[Any], message: Any) -> bool:
    """Tell from a plain thread or a timer; an actor that has stopped needs no news."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        return False
    return True


def _notify(ref: pykka.ActorRef[Any], message: Any) -> None:
    """``_tell_quietly`` for a timer, which wants no answer."""
    _tell_quietly(ref, message)


def _send_shutdown(connection: Connection) -> None:
    # Its answer does not matter, the end of the conversation does.
    with contextlib.suppress(TooManyRequests):
        connection.call(Shutdown, wait_for_slot=False)


def _tell_and_wait(ref: pykka.ActorRef[Any], message: _Ended | _Kill) -> None:
    # From a thread of the child (the reader, a handler): wait until the actor has reported.
    if _tell_quietly(ref, message):
        message.done.wait(REPORT_WAIT)


class InMemoryProcess(pykka.ThreadingActor):
    """Owns one :class:`InMemoryChild` for a ``ControllerActor``, as a ``ProcessActor`` owns a
    child process: starts it, gets it ready, stops it, reports its end.

    Args:
        controller: the controller actor to report to.
        generation: this child's generation number.
        spec: the timeouts, the readiness, ``prepare`` and the connection's options.
        worker: a worker class (instantiated here) or instance.
        name: the controller's name, for logs.
        concurrency: how many handlers the in-memory runtime runs at once.
        started: called with the child once it is served (the ``FakeController`` keeps it).
    """

    use_daemon_thread = True

    @staticmethod
    def kill(ref: pykka.ActorRef[Any], detail: str) -> bool:
        """From any thread but the actor's: kill the child of the actor ``ref`` as SIGKILL
        from outside kills a process (``detail`` says why), and wait until its termination is
        reported. False if that actor had stopped already (its child had ended).

        Raises:
            RuntimeError: the actor did not report within ``REPORT_WAIT`` seconds.
        """
        done = threading.Event()
        if not _tell_quietly(ref, _Kill(detail, done)):
            return False
        if not done.wait(REPORT_WAIT):
            raise RuntimeError(f"the in-memory child of {ref} was not killed in time")
        return True

    def __init__(
        self,
        controller: pykka.ActorRef[Any],
        generation: int,
        spec: LaunchSpec,
        worker: object,
        name: str,
        concurrency: int | None,
        started: Callable[[InMemoryChild], None],
    ) -> None:
        super().__init__()
        self._controller = controller
        self._generation = generation
        self._spec = spec
        self._worker = worker
        self._name = name
        self._concurrency = concurrency
        self._started = started
        self._log = log.bind(controller=name, generation=generation)

        # This actor's thread only.
        self._phase = Phase.STARTING
        self._child: InMemoryChild | None = None
        self._timers: list[TimerHandle] = []
        self._requested = False
        self._cause: str | None = None  # why we stopped it, when we did unasked
        self._detail = ""
        self._last_step: str | None = None
        self._killed: str | None = None  # the detail of a kill from outside
        self._final: TerminationReason | None = None  # a failed launch's report
        self._deadline = 0.0

        # Set by the reader's thread when the conversation is over; read by on_stop.
        self._conversation_over = threading.Event()

    # --- dispatch -----------------------------------------------------------------------

    def _dispatch(self, event: Event, payload: Any = None) -> None:
        row = LIFECYCLE.get((self._phase, event))
        if row is None:
            self._log.debug("ignored", phase=self._phase.value, on=event.value)
            return
        old, (new, action) = self._phase, row
        self._phase = new
        if action is not None:
            action(self, payload)
        if new is not old:
            entry = _ENTRY.get(new)
            if entry is not None:
                entry(self)

    def on_receive(self, message: Any) -> Any:
        """Turn ``message`` into an event and run it through ``LIFECYCLE``."""
        try:
            kind = _EVENT_OF.get(type(message))
            if kind is None:
                self._log.warning("unexpected_message", message=repr(message))
                return None
            event = kind(self, message)
            if event is not None:
                self._dispatch(event, message)
        finally:
            done = getattr(message, "done", None)
            if isinstance(done, threading.Event):
                done.set()
        return None

    def _ready_event(self, message: _Ready) -> Event:
        return Event.PROBE_PASSED if message.error is None else Event.PROBE_FAILED

    def _step_event(self, message: _StepDue) -> Event | None:
        return Event.STEP_DUE if message.phase is self._phase else None

    # --- starting ------------------------------------------------------------------------

    def on_start(self) -> None:
        """Serve the worker in memory and start the readiness probe."""
        spec = self._spec
        me = self.actor_ref
        self._deadline = time.monotonic() + spec.startup_timeout
        self._timers.append(
            call_later(spec.startup_timeout, lambda: _notify(me, _StartupTimedOut()))
        )
        try:
            worker = self._worker() if isinstance(self._worker, type) else self._worker
            child = InMemoryChild(
                worker,
                name=self._name,
                generation=self._generation,
                options=spec.connection,
                concurrency=self._concurrency,
                on_end=self._conversation_ended,
                crash=lambda: _tell_and_wait(me, _Kill("crashed (scripted)", threading.Event())),
            )
        except Exception as error:
            self._final = TerminationReason(
                how="launch_failed",
                detail=f"cannot serve the in-memory worker {self._worker!r}: {error!r}",
            )
            self._dispatch(Event.LAUNCH_FAILED)
            return
        self._child = child
        self._started(child)
        threading.Thread(
            target=self._get_ready,
            name=f"juicectl-{self._name}-{self._generation}-startup",
            daemon=True,
        ).start()

    def _conversation_ended(self) -> None:
        # On the reader's thread: on_stop waits on the event (no message reaches it).
        self._conversation_over.set()
        _tell_and_wait(self.actor_ref, _Ended(threading.Event()))

    def _get_ready(self) -> None:
        """Readiness probe, then ``prepare``: on a thread of its own (they block)."""
        child = self._child
        assert child is not None
        connection, spec, deadline = child.connection, self._spec, self._deadline
        error: BaseException | None = None
        try:
            if spec.readiness == "negotiate":
                remaining = max(0.001, deadline - time.monotonic())
                answer = connection.call(Negotiate, versions=[1], timeout=remaining).get(
                    timeout=remaining
                )
                if answer["version"] != 1:
                    raise ProcessUnavailable(f"negotiated version {answer['version']!r}, not 1")
            if spec.prepare is not None:
                outcome = spec.prepare(connection)
                getter = getattr(outcome, "get", None)
                if callable(getter):
                    getter(timeout=max(0.0, deadline - time.monotonic()))
        except BaseException as failure:
            error = failure
        if error is not None and (
            isinstance(error, pykka.Timeout) or time.monotonic() >= deadline
        ):
            _tell_quietly(self.actor_ref, _StartupTimedOut())
            return
        _tell_quietly(self.actor_ref, _Ready(error))

    # --- actions: the effects of one event (the table has set the phase) ------------------

    def _probe_failed(self, message: _Ready) -> None:
        self._log.warning("startup_failed", error=repr(message.error))
        self._begin_stop("startup_failed", f"start failed: {message.error}")

    def _startup_timed_out(self, _: Any) -> None:
        self._log.warning("startup_timeout", timeout=self._spec.startup_timeout)
        self._begin_stop("startup_timeout", f"not ready within {self._spec.startup_timeout}s")

    def _stop_asked(self, _: Any) -> None:
        self._requested = True

    def _killed_from_outside(self, message: _Kill) -> None:
        self._killed = message.detail

    def _give_up(self, _: Any) -> None:
        # Past the last step: counted killed, as SIGKILL would have ended a process; the
        # report kills it (a handler still running is left to finish: threads cannot die).
        self._last_step = "sigkill"
        self._log.warning("stop_step", step="sigkill")

    def _begin_stop(self, cause: str, detail: str) -> None:
        if self._cause is None and not self._requested:
            self._cause, self._detail = cause, detail

    # --- entry effects ------------------------------------------------------------------

    def _enter_ready(self) -> None:
        child = self._child
        assert child is not None
        self._log.info("ready")
        self._tell_controller(ChildProcessCreated(self._generation, 0, child.connection))

    def _enter_shutdown(self) -> None:
        child = self._child
        assert child is not None
        self._last_step = "shutdown"
        self._log.info("stop_step", step="shutdown")
        connection = child.connection
        self._stop_taking(connection)
        if not connection.closed:
            # From a thread of its own, as the process actor does: never block this actor.
            threading.Thread(
                target=_send_shutdown,
                args=(connection,),
                name=f"juicectl-{self._name}-{self._generation}-shutdown",
                daemon=True,
            ).start()
        self._arm_step(self._spec.stop_timeout)

    def _enter_close_stdin(self) -> None:
        child = self._child
        assert child is not None
        self._last_step = "close_stdin"
        self._log.info("stop_step", step="close_stdin")
        self._stop_taking(child.connection)
        child.close_input()
        self._arm_step(self._spec.kill_timeout)

    def _stop_taking(self, connection: Connection) -> None:
        # As the process actor: nothing new goes to a child on its way out.
        connection.stop_taking(ProcessUnavailable(
            f"in-memory child {self._generation} is stopping "
            f"({self._cause or 'a stop was asked for'}); the request was not sent"
        ))

    def _arm_step(self, wait: float) -> None:
        me, phase = self.actor_ref, self._phase
        self._timers.append(call_later(wait, lambda: _notify(me, _StepDue(phase))))

    def _enter_reported(self) -> None:
        for timer in self._timers:
            timer.cancel()
        reason = self._final or self._reason()
        # The controller first: whoever sees the connection fail next asks a controller that
        # already knows (see the module docstring).
        self._tell_controller(ChildProcessTerminated(self._generation, reason))
        child = self._child
        if child is not None:
            child.connection.connection_lost(
                ProcessUnavailable(reason.describe(), stderr_tail=reason.stderr_tail)
            )
            child.kill(reason.detail or reason.how)
        self._log.info("exited", how=reason.how)
        with contextlib.suppress(pykka.ActorDeadError):  # already stopping (on_stop)
            self.stop()

    # --- the report ---------------------------------------------------------------------

    def _reason(self) -> TerminationReason:
        child = self._child
        common: dict[str, Any] = {
            "pid": 0,
            "requested": self._requested,
            "stop_step": self._last_step,
        }
        if self._killed is not None:
            return TerminationReason(
                signal=signal.SIGKILL, how="signaled", detail=self._killed, **common
            )
        if self._last_step == "sigkill":
            how = self._cause if self._cause is not None and not self._requested else "killed"
            return TerminationReason(
                signal=signal.SIGKILL, how=how, detail=self._detail, **common
            )
        status = 1 if child is not None and child.protocol_error is not None else 0
        if self._cause is not None and not self._requested:
            how = self._cause
        elif self._last_step is None:
            how = "exited"
        elif self._last_step == "close_stdin":
            how = "stdin_closed"
        else:
            how = "clean" if status == 0 else "exited"
        return TerminationReason(exit_status=status, how=how, detail=self._detail, **common)

    def _tell_controller(self, message: Any) -> None:
        if not _tell_quietly(self._controller, message):
            self._log.debug("controller_gone", message=type(message).__name__)

    # --- end of life ----------------------------------------------------------------------

    def on_stop(self) -> None:
        """Stopped by pykka: stop a child not yet reported, as ``StopChild`` would."""
        if self._phase is not Phase.REPORTED and self._child is not None:
            if not self._requested:
                self._log.info("stopped_from_outside", phase=self._phase.value)
                self._detail = "its process actor was stopped"
                self._tell_controller(_Close(ReplyFuture()))
                close_every_controller()  # as the ProcessActor does: all stop in parallel
            self._dispatch(Event.STOP_ASKED)
            while self._phase in (Phase.STOPPING_SHUTDOWN, Phase.STOPPING_CLOSE_STDIN):
                wait = (
                    self._spec.stop_timeout
                    if self._phase is Phase.STOPPING_SHUTDOWN
                    else self._spec.kill_timeout
                )
                self._dispatch(
                    Event.ENDED if self._conversation_over.wait(wait) else Event.STEP_DUE
                )
        self._end_of_life()

    def on_failure(self, *args: Any) -> None:
        """A failed actor reports its child killed: nothing is left running or waiting."""
        self._end_of_life()

    def _end_of_life(self) -> None:
        if self._phase is not Phase.REPORTED:
            self._dispatch(Event.ACTOR_STOPPED)
        for timer in self._timers:
            timer.cancel()
        # Threads that told this actor and wait for an answer it will never read.
        while not self.actor_inbox.empty():
            done = getattr(self.actor_inbox.get().message, "done", None)
            if isinstance(done, threading.Event):
                done.set()


_A = InMemoryProcess
_S, _R, _D = Phase.STARTING, Phase.READY, Phase.REPORTED
_SD, _SC = Phase.STOPPING_SHUTDOWN, Phase.STOPPING_CLOSE_STDIN
_Action = Callable[[InMemoryProcess, Any], None]

#: ``(phase, event) -> (next phase, action)``: every decision about an in-memory child's phase.
#: A pair that is not here changes nothing.
LIFECYCLE: dict[tuple[Phase, Event], tuple[Phase, _Action | None]] = {
    (_S, Event.LAUNCH_FAILED): (_D, None),
    (_S, Event.PROBE_PASSED): (_R, None),
    (_S, Event.PROBE_FAILED): (_SC, _A._probe_failed),
    (_S, Event.STARTUP_TIMED_OUT): (_SC, _A._startup_timed_out),
    (_S, Event.STOP_ASKED): (_SC, _A._stop_asked),  # never ready: not asked for Shutdown
    (_R, Event.STOP_ASKED): (_SD, _A._stop_asked),
    (_SD, Event.STOP_ASKED): (_SD, _A._stop_asked),
    (_SC, Event.STOP_ASKED): (_SC, _A._stop_asked),
    (_SD, Event.STEP_DUE): (_SC, None),
    (_SC, Event.STEP_DUE): (_D, _A._give_up),
}
for _phase in (_S, _R, _SD, _SC):
    LIFECYCLE[(_phase, Event.ENDED)] = (_D, None)
    LIFECYCLE[(_phase, Event.KILLED)] = (_D, _A._killed_from_outside)
    LIFECYCLE[(_phase, Event.ACTOR_STOPPED)] = (_D, _A._give_up)

_ENTRY: dict[Phase, Callable[[InMemoryProcess], None]] = {
    _R: _A._enter_ready,
    _SD: _A._enter_shutdown,
    _SC: _A._enter_close_stdin,
    _D: _A._enter_reported,
}

_EVENT_OF: dict[type, Callable[[InMemoryProcess, Any], Event | None]] = {
    _Ready: _A._ready_event,
    _StartupTimedOut: lambda actor, message: Event.STARTUP_TIMED_OUT,
    StopChild: lambda actor, message: Event.STOP_ASKED,
    _StepDue: _A._step_event,
    _Ended: lambda actor, message: Event.ENDED,
    _Kill: lambda actor, message: Event.KILLED,
    # A close interrupted by Ctrl-C: an in-memory child has no signal to hurry to.
    _HurryStop: lambda actor, message: None,
}
