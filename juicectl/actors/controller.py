"""The controller actor: the seed's five modes, and every transition between them, as data.

Theory of operation
-------------------
A controller is one actor holding the *mode* of one supervised child and every future that
waits on that child. The mode is the seed's (``Mode``). ``TRANSITIONS`` maps each (mode,
message type) to its rows, ``Transition(next mode, action, when=guard)``; ``on_receive`` takes
the first row whose guard holds (a row without one always does), sets the mode, then runs the
row's action. Setting the mode is the whole transition: a change is logged (``mode_changed``)
and told to subscribers (``ModeChanged``) there and nowhere else. An action only does effects
(settles futures, tells the process actor, publishes events, keeps the child's figures); it
never picks a mode. The one thing an action may hand back is the ``ChildProcessTerminated`` of a
child whose process actor could not even be made: it goes through the table at once, as the
process actor's own report would.

Entering ``starting`` is launching a child (the seed's "stopped -> starting: launch process"):
the controller gives the new child the next *generation* as it sets the mode, so the
``ModeChanged`` already names it. Every message about a child carries its generation; one
about another child (older, or before any launch) is ``stale`` and changes nothing.

Three smaller machines sit beside the mode. Their states are what the guards read, and every
move between them is made by an action of this module:

* **Restart** (``RestartState``): ``idle``; ``pending``, a backoff: the mode is ``stopped``
  and the restart timer is set; ``gave_up``: the policy's limit was passed, the mode is
  ``stopped``. An exit nobody asked for moves ``idle`` to ``pending`` or ``gave_up``, as the
  ``RestartHistory`` decides. The timer firing (``_RestartDue``), a stop or a close move
  ``pending`` back to ``idle``; a caller's ``GetProcess`` moves ``gave_up`` to ``idle``. Every
  launch leaves it ``idle``, so it is ``pending`` or ``gave_up`` only in ``stopped``.
* **Closing** (``CloseState``): ``open``; ``closing``: ``close()`` was asked for while a child
  ran, the mode went to ``stopping`` or ``waiting_ready`` (or was there) and waits for the
  child's exit; ``closed``: no child is left, the actor has told itself to stop, and the close
  futures are settled as it stops. From ``closing`` on, every ``GetProcess`` is refused.
* **Stop requested** needs no state of its own: a stop (or close) was asked for since the
  current child launched exactly when the mode is ``stopping`` or ``waiting_ready``, so the
  rows that end a child say it by their action (``child_stopped``, ``finish_close`` against
  ``child_lost``, ``failed_start``).

The rows implement the seed's contract (``ProcessController`` of Divmod Axiom, quoted beside
``TRANSITIONS``). Deferreds became reply futures carried in the messages
(``GetProcess.reply_to``), and the process object became a process actor made by a
``ProcessFactory``. Where the rows differ from the original code (not from its documentation):

* A message about another child than the current one is logged as ``stale_message`` and
  ignored, so a late message from a dead child can never move the mode.
* ``stopProcess`` in ``starting`` resolves only once the child has *exited* (the original
  fired it when the child started). A stop asked for in ``stopping`` or ``waiting_ready`` waits
  for the same exit; the seed left those rows out.
* ``getProcess`` in ``ready`` fails with ``ProcessUnavailable`` instead of handing out a
  connection that is already closed (the child is going; its exit is not reported yet).
* ``childProcessTerminated`` fails waiters with ``ProcessUnavailable`` carrying the reason
  and the child's stderr tail, or ``ProcessLaunchError`` when the child could not be launched
  (the original stayed in ``starting`` forever after a failed launch).
* The termination event (the seed's ``onProcessTermination``) is told to subscribers only when
  no stop was requested since that child launched, on every path, ``waiting_ready`` included
  (the original called the hook there, against its own documentation).
* Restarts (an extension): after an exit nobody asked for the ``RestartPolicy`` may schedule a
  restart after a backoff. A ``GetProcess`` during the backoff queues its future for the coming
  child; a ``StopProcess`` cancels the restart, fails those futures with ``ProcessUnavailable``
  and resolves ``not_running``. Waiters of a restarted child that fails to start wait for the
  next restart, if one is scheduled. Past the policy's limit the controller gives up
  (``GaveUp`` event, ``gave_up`` log line) until the next ``GetProcess``.
* Closing (``_Close``, an extension) is a stop whose futures are settled only once the actor
  stops, and which then stops the actor.

End of life: whenever the actor stops (a close, ``ActorRegistry.stop_all()``, a crash), it
cancels the restart timer, tells a child still running ``StopChild`` (``_abandon_child``, the
one place that decides what becomes of it), settles every future it holds or finds in its
inbox, so nothing is left hanging, and leaves its handle an ``EndOfLife``: how the last stop
ended and its final figures (``_end_of_life``). ``ActorRegistry.stop_all()`` stops the actors
newest first, so a child's process actor goes before its controller: it tells the controller
``_Close`` and stops the child itself (see ``juicectl.actors.process``), and by the time the
controller is stopped it has closed, as if ``close()`` had been called.

The actor never blocks: it never waits on another actor's future, and the restart timer's
thread only ``tell()``s the actor that the timer fired.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Final

import pykka

from juicectl._log import get_logger
from juicectl._threads import note_actor_thread
from juicectl._timer import TimerHandle, call_later
from juicectl.actors.subscribers import publish
from juicectl.exceptions import ControllerClosed, ProcessLaunchError, ProcessUnavailable
from juicectl.messages import (
    ChildProcessCreated,
    ChildProcessTerminated,
    GaveUp,
    GetProcess,
    ModeChanged,
    ProcessStarted,
    ProcessTerminated,
    StopChild,
    StopProcess,
    StopResult,
    Subscribe,
    TerminationReason,
    _Close,
    _GetMode,
    _GetStats,
    _HurryStop,
    _RestartDue,
)
from juicectl.policy import GiveUp, LaunchSpec, RestartHistory, RestartPolicy

__all__ = [
    "TRANSITIONS",
    "Action",
    "CloseState",
    "ControllerActor",
    "EndOfLife",
    "Guard",
    "Mode",
    "ProcessFactory",
    "RestartState",
    "Transition",
    "fail_future",
    "resolve_future",
]

log = get_logger(__name__)

ProcessFactory = Callable[[pykka.ActorRef[Any], int, LaunchSpec], pykka.ActorRef[Any]]
"""Makes the process actor of one child: ``factory(controller_ref, generation, spec)`` returns
an already started actor ref. It must not block; the child reports back with
``ChildProcessCreated`` / ``ChildProcessTerminated`` messages to ``controller_ref``."""


# --- the machines --------------------------------------------------------------------------

# The seed's modes, verbatim:
#
#     Mode is one of
#     'stopped' (no process running or starting)
#     'starting' (process begun but not ready for requests)
#     'ready' (process ready for requests)
#     'stopping' (process being torn down)
#     'waiting_ready' (process beginning but will be shut down
#     as soon as it starts up)


class Mode(StrEnum):
    """The controller's mode. The values are the seed's names; ``Mode.READY == "ready"``."""

    STOPPED = "stopped"
    """No process running or starting (a restart may be pending, see ``RestartState``)."""
    STARTING = "starting"
    """Process begun but not ready for requests."""
    READY = "ready"
    """Process ready for requests."""
    STOPPING = "stopping"
    """Process being torn down."""
    WAITING_READY = "waiting_ready"
    """Process beginning, but will be shut down as soon as it starts up."""


class RestartState(StrEnum):
    """Whether an automatic restart is coming (see the module's theory of operation)."""

    IDLE = "idle"
    """No restart scheduled, none refused."""
    PENDING = "pending"
    """A backoff: the timer will tell ``_RestartDue``; the mode is ``stopped``."""
    GAVE_UP = "gave_up"
    """The policy's limit was passed; the next ``GetProcess`` launches and counts afresh."""


class CloseState(StrEnum):
    """Where a ``close()`` stands (see the module's theory of operation)."""

    OPEN = "open"
    """No close asked for."""
    CLOSING = "closing"
    """Asked for while a child ran: waiting for its exit."""
    CLOSED = "closed"
    """No child left; the actor is stopping."""


class Guard(StrEnum):
    """A condition a row of ``TRANSITIONS`` needs besides the mode and the message type."""

    STALE = "stale"
    """The message is about another child than the current one (or none was launched)."""
    CLOSING = "closing"
    """``close()`` was asked for (``CloseState`` is not ``open``)."""
    RESTART_PENDING = "restart_pending"
    """A restart is scheduled (``RestartState.PENDING``): a backoff."""
    STALE_TIMER = "stale_timer"
    """The timer that fired is not the pending restart's (it was cancelled or superseded)."""
    CONNECTION_LOST = "connection_lost"
    """The ready child's connection is already closed; its exit is not reported yet."""


class Action(StrEnum):
    """What a row of ``TRANSITIONS`` does once the mode is set: effects only."""

    LAUNCH = "launch"
    """Queue the caller's future, count restarts afresh, make the new child's process actor."""
    RESTART = "restart"
    """The backoff is over: count the restart, make the new child's process actor."""
    QUEUE_GET = "queue_get"
    """Queue the ``GetProcess`` future for the child on its way."""
    WAIT_FOR_RESTART = "wait_for_restart"
    """Queue the ``GetProcess`` future for the child the pending restart will launch."""
    HAND_OUT = "hand_out"
    """Set the ``GetProcess`` future to the ready child's connection."""
    REFUSE_LOST = "refuse_lost"
    """Fail the ``GetProcess`` future: the connection is lost (``ProcessUnavailable``)."""
    REFUSE_STOPPING = "refuse_stopping"
    """Fail the ``GetProcess`` future: the child is being stopped (``ProcessUnavailable``)."""
    REFUSE_CLOSED = "refuse_closed"
    """Fail the ``GetProcess`` future with ``ControllerClosed``."""
    NOTHING_TO_STOP = "nothing_to_stop"
    """No child: cancel a pending restart; a stop resolves ``not_running``, a close finishes."""
    AWAIT_EXIT = "await_exit"
    """Queue the stop (or close) future for the child's exit."""
    STOP_CHILD = "stop_child"
    """Queue the stop (or close) future, tell the process actor ``StopChild``."""
    RELEASE_WAITERS = "release_waiters"
    """The child is ready: tell ``ProcessStarted``, hand every queued future the connection."""
    SHUT_DOWN_STARTED = "shut_down_started"
    """The child is ready but a stop came first: fail queued ``GetProcess`` futures, stop it."""
    FAILED_START = "failed_start"
    """A child nobody asked to stop ended before it was ready: tell, ask the restart policy."""
    CHILD_LOST = "child_lost"
    """A ready child nobody asked to stop ended: tell ``ProcessTerminated``, ask the policy."""
    CHILD_STOPPED = "child_stopped"
    """The child asked to stop has ended: resolve the stop futures."""
    FINISH_CLOSE = "finish_close"
    """The child asked to stop by a close has ended: resolve, then stop the actor."""
    IGNORE_STALE = "ignore_stale"
    """Log ``stale_message``."""
    IGNORE_TIMER = "ignore_timer"
    """Log ``stale_restart_timer``."""
    LOG_UNEXPECTED = "log_unexpected"
    """Log ``unexpected_message``: the current child reported what this mode does not expect."""


@dataclass(frozen=True)
class Transition:
    """One row of ``TRANSITIONS``: if ``when`` holds (or is None), go to ``next``, then run
    ``action``."""

    next: Mode
    """The mode after the message (the same mode: no transition)."""
    action: Action
    """The effects to run once the mode is set."""
    when: Guard | None = None
    """The row applies only while this holds; rows are tried in order."""


# The seed's table, verbatim (``ProcessController`` of Divmod Axiom's ``axiom/batch.py``):
#
#     Transitions are as follows
#     getProcess:
#     stopped -> starting:
#     launch process
#     create/save in waitingForStartup/return Deferred
#     starting -> starting:
#     create/save/return Deferred
#     ready -> ready:
#     return saved process
#     stopping:
#     return failing Deferred indicating transient failure
#     waiting_ready:
#     return failing Deferred indicating transient failure
#     stopProcess:
#     stopped -> stopped:
#     return succeeding Deferred
#     starting -> waiting_ready:
#     create Deferred, add transient failure errback handler, return
#     ready -> stopping:
#     call shutdown on process
#     return Deferred which fires when shutdown is done
#     childProcessCreated:
#     starting -> ready:
#     callback saved Deferreds
#     clear saved Deferreds
#     waiting_ready:
#     errback saved Deferred indicating transient failure
#     return _shutdownIndexerProcess()
#     childProcessTerminated:
#     starting -> stopped:
#     errback saved Deferreds indicating transient failure
#     waiting_ready -> stopped:
#     errback saved Deferreds indicating transient failure
#     ready -> stopped:
#     drop reference to process object
#     stopping -> stopped:
#     Callback saved shutdown deferred

TRANSITIONS: Final[Mapping[tuple[Mode, type], tuple[Transition, ...]]] = {
    # getProcess
    (Mode.STOPPED, GetProcess): (
        Transition(Mode.STOPPED, Action.REFUSE_CLOSED, when=Guard.CLOSING),
        Transition(Mode.STOPPED, Action.WAIT_FOR_RESTART, when=Guard.RESTART_PENDING),
        Transition(Mode.STARTING, Action.LAUNCH),
    ),
    (Mode.STARTING, GetProcess): (Transition(Mode.STARTING, Action.QUEUE_GET),),
    (Mode.READY, GetProcess): (
        Transition(Mode.READY, Action.REFUSE_LOST, when=Guard.CONNECTION_LOST),
        Transition(Mode.READY, Action.HAND_OUT),
    ),
    (Mode.STOPPING, GetProcess): (
        Transition(Mode.STOPPING, Action.REFUSE_CLOSED, when=Guard.CLOSING),
        Transition(Mode.STOPPING, Action.REFUSE_STOPPING),
    ),
    (Mode.WAITING_READY, GetProcess): (
        Transition(Mode.WAITING_READY, Action.REFUSE_CLOSED, when=Guard.CLOSING),
        Transition(Mode.WAITING_READY, Action.REFUSE_STOPPING),
    ),
    # stopProcess
    (Mode.STOPPED, StopProcess): (Transition(Mode.STOPPED, Action.NOTHING_TO_STOP),),
    (Mode.STARTING, StopProcess): (Transition(Mode.WAITING_READY, Action.AWAIT_EXIT),),
    (Mode.READY, StopProcess): (Transition(Mode.STOPPING, Action.STOP_CHILD),),
    (Mode.STOPPING, StopProcess): (Transition(Mode.STOPPING, Action.AWAIT_EXIT),),
    (Mode.WAITING_READY, StopProcess): (Transition(Mode.WAITING_READY, Action.AWAIT_EXIT),),
    # childProcessCreated
    (Mode.STOPPED, ChildProcessCreated): (
        Transition(Mode.STOPPED, Action.IGNORE_STALE, when=Guard.STALE),
        Transition(Mode.STOPPED, Action.LOG_UNEXPECTED),
    ),
    (Mode.STARTING, ChildProcessCreated): (
        Transition(Mode.STARTING, Action.IGNORE_STALE, when=Guard.STALE),
        Transition(Mode.READY, Action.RELEASE_WAITERS),
    ),
    (Mode.READY, ChildProcessCreated): (
        Transition(Mode.READY, Action.IGNORE_STALE, when=Guard.STALE),
        Transition(Mode.READY, Action.LOG_UNEXPECTED),
    ),
    (Mode.STOPPING, ChildProcessCreated): (
        Transition(Mode.STOPPING, Action.IGNORE_STALE, when=Guard.STALE),
        Transition(Mode.STOPPING, Action.LOG_UNEXPECTED),
    ),
    (Mode.WAITING_READY, ChildProcessCreated): (
        Transition(Mode.WAITING_READY, Action.IGNORE_STALE, when=Guard.STALE),
        Transition(Mode.STOPPING, Action.SHUT_DOWN_STARTED),
    ),
    # childProcessTerminated
    (Mode.STOPPED, ChildProcessTerminated): (
        Transition(Mode.STOPPED, Action.IGNORE_STALE, when=Guard.STALE),
        Transition(Mode.STOPPED, Action.LOG_UNEXPECTED),
    ),
    (Mode.STARTING, ChildProcessTerminated): (
        Transition(Mode.STARTING, Action.IGNORE_STALE, when=Guard.STALE),
        Transition(Mode.STOPPED, Action.FAILED_START),
    ),
    (Mode.READY, ChildProcessTerminated): (
        Transition(Mode.READY, Action.IGNORE_STALE, when=Guard.STALE),
        Transition(Mode.STOPPED, Action.CHILD_LOST),
    ),
    (Mode.STOPPING, ChildProcessTerminated): (
        Transition(Mode.STOPPING, Action.IGNORE_STALE, when=Guard.STALE),
        Transition(Mode.STOPPED, Action.FINISH_CLOSE, when=Guard.CLOSING),
        Transition(Mode.STOPPED, Action.CHILD_STOPPED),
    ),
    (Mode.WAITING_READY, ChildProcessTerminated): (
        Transition(Mode.WAITING_READY, Action.IGNORE_STALE, when=Guard.STALE),
        Transition(Mode.STOPPED, Action.FINISH_CLOSE, when=Guard.CLOSING),
        Transition(Mode.STOPPED, Action.CHILD_STOPPED),
    ),
    # the restart timer (extension)
    (Mode.STOPPED, _RestartDue): (
        Transition(Mode.STOPPED, Action.IGNORE_TIMER, when=Guard.STALE_TIMER),
        Transition(Mode.STARTING, Action.RESTART),
    ),
    (Mode.STARTING, _RestartDue): (Transition(Mode.STARTING, Action.IGNORE_TIMER),),
    (Mode.READY, _RestartDue): (Transition(Mode.READY, Action.IGNORE_TIMER),),
    (Mode.STOPPING, _RestartDue): (Transition(Mode.STOPPING, Action.IGNORE_TIMER),),
    (Mode.WAITING_READY, _RestartDue): (Transition(Mode.WAITING_READY, Action.IGNORE_TIMER),),
    # close (extension): the rows of stopProcess; once the child has exited the actor stops
    (Mode.STOPPED, _Close): (Transition(Mode.STOPPED, Action.NOTHING_TO_STOP),),
    (Mode.STARTING, _Close): (Transition(Mode.WAITING_READY, Action.STOP_CHILD),),
    (Mode.READY, _Close): (Transition(Mode.STOPPING, Action.STOP_CHILD),),
    (Mode.STOPPING, _Close): (Transition(Mode.STOPPING, Action.AWAIT_EXIT),),
    (Mode.WAITING_READY, _Close): (Transition(Mode.WAITING_READY, Action.AWAIT_EXIT),),
}
"""Every transition: (mode, message type) -> the rows to try in order, each ``Transition(next
mode, action, when=guard)``; the last row of each has no guard. A closing controller is only
ever in ``stopping``, ``waiting_ready`` or ``stopped`` (the close moves it there at once), so
only those rows of ``GetProcess`` need the ``closing`` guard."""

_CAUSES: Final[Mapping[type, str]] = {_Close: "close", _RestartDue: "restart"}
"""The ``cause`` a ``ModeChanged`` names for these messages; any other gives its class name."""


# --- settling futures ----------------------------------------------------------------------


def resolve_future(future: Any, value: Any = None) -> bool:
    """Set ``future`` to ``value`` unless it is already settled. Returns whether it was set.

    Accepts a ``ReplyFuture`` (``try_set``) or any ``pykka.Future`` (``set``, which raises
    ``queue.Full`` when the future already holds a result).
    """
    try_set = getattr(future, "try_set", None)
    if try_set is not None:
        return bool(try_set(value))
    try:
        future.set(value)
    except queue.Full:
        return False
    return True


def fail_future(future: Any, error: BaseException) -> bool:
    """Fail ``future`` with ``error`` unless it is already settled. Returns whether it was."""
    try_set_exception = getattr(future, "try_set_exception", None)
    if try_set_exception is not None:
        return bool(try_set_exception(error))
    try:
        future.set_exception((type(error), error, error.__traceback__))
    except queue.Full:
        return False
    return True


# --- the actor -----------------------------------------------------------------------------


class ControllerActor(pykka.ThreadingActor):
    """Holds the mode of one supervised child and the futures waiting on it.

    Args:
        name: the controller's name, bound into every log line and event.
        spec: how to launch the child, handed to ``process_factory``.
        process_factory: makes the process actor of each child (see ``ProcessFactory``).
        policy: when to restart a child that ended without being asked to.
        subscribers: actor refs told every event (``ModeChanged``, ``ProcessStarted``,
            ``ProcessTerminated``, ``GaveUp``); more can be added with ``Subscribe``.
        clock: seconds, monotonic; used for uptimes and the restart window.
        end_of_life: a future the actor sets with its ``EndOfLife`` as it stops (the handle
            keeps it, to answer ``close()`` and ``stats()`` once the actor is gone).

    Messages handled: ``GetProcess``, ``StopProcess``, ``Subscribe``, ``ChildProcessCreated``,
    ``ChildProcessTerminated`` and the private ``_Close``, ``_GetMode``, ``_GetStats`` (and
    ``_RestartDue``, sent by its own timer).
    """

    use_daemon_thread = True
    """Python joins non-daemon threads *before* it runs ``atexit`` handlers, so a non-daemon
    controller would keep a program that forgot ``close()`` from ever exiting, and the
    handle's exit-time close (which stops the child) would never run."""

    def __init__(
        self,
        name: str,
        spec: LaunchSpec,
        process_factory: ProcessFactory,
        policy: RestartPolicy,
        subscribers: Sequence[pykka.ActorRef[Any]] = (),
        clock: Callable[[], float] = time.monotonic,
        end_of_life: Any = None,
    ) -> None:
        super().__init__()
        self._end_of_life_future = end_of_life
        self._name = name
        self._spec = spec
        self._factory = process_factory
        self._policy = policy
        self._clock = clock
        self._subscribers: list[pykka.ActorRef[Any]] = list(subscribers)
        self._log = log.bind(controller=name)

        # The machines (see the module's theory of operation).
        self._mode = Mode.STOPPED
        self._restart = RestartState.IDLE
        self._closing = CloseState.OPEN

        # The current child.
        self._generation = 0
        """The generation of the last child launched (0: none yet)."""
        self._process: pykka.ActorRef[Any] | None = None
        self._last_process: pykka.ActorRef[Any] | None = None  # its thread, close() joins
        self._connection: Any = None
        self._pid: int | None = None
        self._ready_at: float | None = None
        self._launch_cause = ""
        """What launched the current child: ``"GetProcess"`` or ``"restart"``."""

        # Who waits.
        self._get_waiters: list[Any] = []
        self._stop_waiters: list[Any] = []
        self._close_waiters: list[Any] = []
        self._close_result: StopResult | None = None

        # Restarts.
        self._timer: TimerHandle | None = None
        self._restart_token = 0
        """The token of the last restart scheduled; a timer carrying another one is stale."""
        self._history = RestartHistory(policy)
        self._last_exit: TerminationReason | None = None
        self._last_exit_requested = False

    # --- dispatch ---------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Answer a query at once; run anything else through ``TRANSITIONS``."""
        query = _QUERIES.get(type(message))
        if query is not None:
            query(self, message)
            return None
        if (self._mode, type(message)) not in TRANSITIONS:
            self._log.warning("unexpected_message", message=repr(message), mode=self._mode.value)
            return None
        next_message: Any = message
        while next_message is not None:
            transition = self._transition(next_message)
            self._enter(transition.next, next_message)
            next_message = _ACTIONS[transition.action](self, next_message)
        return None

    def _transition(self, message: Any) -> Transition:
        """The first row for ``message`` in this mode whose guard holds."""
        for row in TRANSITIONS[(self._mode, type(message))]:
            if row.when is None or _GUARDS[row.when](self, message):
                return row
        raise AssertionError(f"no row of TRANSITIONS holds for {message!r} in {self._mode}")

    def _enter(self, new: Mode, message: Any) -> None:
        """Set the mode; a change is logged and told to subscribers."""
        old, self._mode = self._mode, new
        if new is old:
            return
        if new is Mode.STARTING:
            self._generation += 1  # entering starting is launching a new child
        cause = _CAUSES.get(type(message), type(message).__name__)
        self._log.info(
            "mode_changed",
            old=old.value,
            new=new.value,
            cause=cause,
            generation=self._generation,
            pid=self._reported_pid(message),
        )
        self._publish(ModeChanged(self._name, old.value, new.value, cause, self._generation))

    def _reported_pid(self, message: Any) -> int | None:
        # The pid of the child this change is about, also when only this message knows it
        # (a child that reports ready, or that died before it was ready).
        if isinstance(message, ChildProcessCreated):
            return message.pid
        if self._pid is None and isinstance(message, ChildProcessTerminated):
            return message.reason.pid
        return self._pid

    # --- guards (read by TRANSITIONS; they decide nothing else) ------------------------------

    def _is_stale(self, message: ChildProcessCreated | ChildProcessTerminated) -> bool:
        return message.generation != self._generation or self._generation == 0

    def _is_closing(self, _message: object) -> bool:
        return self._closing is not CloseState.OPEN

    def _is_restart_pending(self, _message: object) -> bool:
        return self._restart is RestartState.PENDING

    def _is_stale_timer(self, message: _RestartDue) -> bool:
        return self._restart is not RestartState.PENDING or message.token != self._restart_token

    def _is_connection_lost(self, _message: object) -> bool:
        return getattr(self._connection, "closed", False) is True

    # --- actions: GetProcess ---------------------------------------------------------------

    def _launch_for_caller(self, message: GetProcess) -> ChildProcessTerminated | None:
        self._get_waiters.append(message.reply_to)
        if self._restart is RestartState.GAVE_UP:
            self._log.info("restart_count_reset", cause="GetProcess")
        # A launch asked for by a caller starts the restart accounting afresh.
        self._restart = RestartState.IDLE
        self._history.reset()
        return self._launch(cause="GetProcess")

    def _queue_get(self, message: GetProcess) -> None:
        self._get_waiters.append(message.reply_to)

    def _wait_for_restart(self, message: GetProcess) -> None:
        # A restart is on its way: wait for that child rather than launch a second one.
        self._get_waiters.append(message.reply_to)
        self._log.debug("get_process_waits_for_restart", waiting=len(self._get_waiters))

    def _hand_out(self, message: GetProcess) -> None:
        resolve_future(message.reply_to, self._connection)

    def _refuse_lost(self, message: GetProcess) -> None:
        # The child is going (its stdout closed, or it broke the protocol) but its exit has
        # not been reported yet: a dead connection would only fail every call.
        fail_future(
            message.reply_to,
            ProcessUnavailable(
                f"controller {self._name!r}: the connection to child {self._pid} was "
                "lost; try again once it has exited"
            ),
        )

    def _refuse_stopping(self, message: GetProcess) -> None:
        fail_future(
            message.reply_to,
            ProcessUnavailable(
                f"controller {self._name!r} is stopping its child ({self._mode.value}); "
                "try again once it has stopped"
            ),
        )

    def _refuse_closed(self, message: GetProcess) -> None:
        fail_future(message.reply_to, self._closed_error())

    # --- actions: StopProcess and _Close ---------------------------------------------------

    def _nothing_to_stop(self, message: StopProcess | _Close) -> None:
        if isinstance(message, StopProcess):
            self._cancel_restart(cause="StopProcess")
            resolve_future(message.reply_to, StopResult("not_running"))
            return
        self._close_waiters.append(message.reply_to)
        self._cancel_restart(cause="close", error=self._closed_error)
        if self._closing is not CloseState.CLOSED:
            self._finish_close(StopResult("not_running"))

    def _await_exit(self, message: StopProcess | _Close) -> None:
        # The seed's starting -> waiting_ready: the child is shut down as soon as it is up,
        # and the future waits for the exit, not for the start (flaw 2 of the original).
        if isinstance(message, StopProcess):
            self._stop_waiters.append(message.reply_to)
            return
        self._closing = CloseState.CLOSING
        self._close_waiters.append(message.reply_to)
        # Nobody will ever hand these a connection now.
        self._fail_get_waiters(self._closed_error)

    def _stop_child(self, message: StopProcess | _Close) -> None:
        self._await_exit(message)
        self._tell_process(StopChild(self._generation))

    # --- actions: ChildProcessCreated ------------------------------------------------------

    def _release_waiters(self, message: ChildProcessCreated) -> None:
        self._pid = message.pid
        self._connection = message.connection
        self._ready_at = self._clock()
        self._publish(ProcessStarted(self._name, message.generation, message.pid))
        waiters, self._get_waiters = self._get_waiters, []
        for waiter in waiters:
            resolve_future(waiter, message.connection)

    def _shut_down_started(self, message: ChildProcessCreated) -> None:
        self._pid = message.pid
        self._fail_get_waiters(
            lambda: ProcessUnavailable(
                f"controller {self._name!r} stopped its child as soon as it started: "
                "a stop was requested while it was starting"
            )
        )
        self._tell_process(StopChild(message.generation))

    # --- actions: ChildProcessTerminated ---------------------------------------------------

    def _failed_start(self, message: ChildProcessTerminated) -> None:
        reason, uptime = self._child_gone(message, requested=False)
        self._publish(ProcessTerminated(self._name, message.generation, reason))
        # A child that never got ready is a failed start, whatever its exit status.
        self._consider_restart(reason, abnormal=True, uptime=uptime)
        if self._launch_cause == "restart" and self._restart is RestartState.PENDING:
            # Callers waiting for an automatic restart wait for the next one, until a child
            # gets ready or the policy gives up (their own timeouts bound the wait). A start
            # a caller asked for fails its waiters at once, as the seed's table says.
            if self._get_waiters:
                self._log.info("waiters_wait_for_next_restart", waiting=len(self._get_waiters))
            return
        self._fail_get_waiters(lambda: self._termination_error(reason))

    def _child_lost(self, message: ChildProcessTerminated) -> None:
        reason, uptime = self._child_gone(message, requested=False)
        self._publish(ProcessTerminated(self._name, message.generation, reason))
        self._consider_restart(reason, abnormal=reason.abnormal, uptime=uptime)
        self._fail_get_waiters(lambda: self._termination_error(reason))

    def _child_stopped(self, message: ChildProcessTerminated) -> None:
        reason, _ = self._child_gone(message, requested=True)
        self._fail_get_waiters(lambda: self._termination_error(reason))

    def _finish_close_on_exit(self, message: ChildProcessTerminated) -> None:
        self._child_stopped(message)
        self._finish_close(StopResult(how=message.reason.how, reason=message.reason))

    def _child_gone(
        self, message: ChildProcessTerminated, *, requested: bool
    ) -> tuple[TerminationReason, float | None]:
        """What every end of the current child does: record it, drop it, resolve the stops.
        Returns the reason and how long the child was ready (None if it never was)."""
        reason = message.reason
        uptime = None if self._ready_at is None else self._clock() - self._ready_at
        self._last_exit = reason
        self._last_exit_requested = requested
        self._log.info(
            "child_terminated",
            generation=message.generation,
            pid=reason.pid,
            how=reason.how,
            exit_status=reason.exit_status,
            signal=reason.signal,
            requested=requested,
            description=reason.describe(),
            uptime=uptime,
        )
        self._process = None
        self._connection = None
        self._pid = None
        self._ready_at = None
        result = StopResult(how=reason.how, reason=reason)
        waiters, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters:
            resolve_future(waiter, result)
        return reason, uptime

    # --- actions: the restart timer, and what is ignored -----------------------------------

    def _restart_now(self, _message: _RestartDue) -> ChildProcessTerminated | None:
        self._restart = RestartState.IDLE
        self._timer = None
        self._history.restarted(self._clock())
        return self._launch(cause="restart")

    def _ignore_timer(self, message: _RestartDue) -> None:
        # Cancelled, or superseded by a caller's launch.
        self._log.debug("stale_restart_timer", token=message.token, mode=self._mode.value)

    def _ignore_stale(self, message: ChildProcessCreated | ChildProcessTerminated) -> None:
        self._log.info(
            "stale_message",
            message=type(message).__name__,
            generation=message.generation,
            current_generation=self._generation,
            mode=self._mode.value,
        )

    def _log_unexpected(self, message: ChildProcessCreated | ChildProcessTerminated) -> None:
        # The current child said twice that it is ready, or spoke after it ended: nothing to
        # change, but a process actor that does this has a bug worth seeing.
        extra = {"pid": message.pid} if isinstance(message, ChildProcessCreated) else {}
        self._log.warning(
            "unexpected_message",
            message=type(message).__name__,
            generation=message.generation,
            mode=self._mode.value,
            **extra,
        )

    # --- the restart machine ----------------------------------------------------------------

    def _consider_restart(
        self, reason: TerminationReason, *, abnormal: bool, uptime: float | None
    ) -> None:
        policy = self._policy
        decision = self._history.decide(abnormal=abnormal, uptime=uptime, now=self._clock())
        if decision is None:
            return
        if isinstance(decision, GiveUp):
            self._restart = RestartState.GAVE_UP
            self._log.warning(
                "gave_up",
                restarts=decision.restarts_in_window,
                window=policy.window,
                max_restarts=policy.max_restarts,
                last_exit=reason.describe(),
            )
            self._publish(GaveUp(self._name, decision.restarts_in_window, policy.window, reason))
            return
        self._restart = RestartState.PENDING
        self._restart_token += 1
        token = self._restart_token
        ref = self.actor_ref

        def due() -> None:
            # Runs on the timer's thread: only tell the actor, never touch its state.
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(_RestartDue(token))

        self._timer = call_later(decision.delay, due)
        self._log.info(
            "restart_scheduled",
            delay=decision.delay,
            attempt=decision.attempt,
            restarts_in_window=decision.restarts_in_window,
            last_exit=reason.describe(),
        )

    def _cancel_restart(
        self, *, cause: str, error: Callable[[], BaseException] | None = None
    ) -> None:
        if self._restart is not RestartState.PENDING:
            return
        self._restart = RestartState.IDLE
        self._restart_token += 1
        self._cancel_timer()
        self._log.info("restart_cancelled", cause=cause, waiting=len(self._get_waiters))
        self._fail_get_waiters(
            error
            or (
                lambda: ProcessUnavailable(
                    f"controller {self._name!r}: the pending restart was cancelled by {cause}"
                )
            )
        )

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- the closing machine ----------------------------------------------------------------

    def _finish_close(self, result: StopResult) -> None:
        self._closing = CloseState.CLOSED
        self._close_result = result
        self._log.info("controller_closed", generation=self._generation)
        # The close futures are settled in on_stop, once the actor no longer takes messages.
        self.stop()

    # --- queries (no transition) ------------------------------------------------------------

    def _subscribe(self, message: Subscribe) -> None:
        if message.subscriber not in self._subscribers:
            self._subscribers.append(message.subscriber)

    def _get_mode(self, message: _GetMode) -> None:
        resolve_future(message.reply_to, self._mode)

    def _get_stats(self, message: _GetStats) -> None:
        resolve_future(message.reply_to, self.stats())

    def stats(self) -> dict[str, Any]:
        """The controller's figures (call on the actor's thread; others send ``_GetStats``).

        Keys: ``name``, ``mode`` (str), ``pid`` (or None), ``generation``, ``uptime``
        (seconds since the child got ready, or None), ``restarts`` (automatic restarts
        so far), ``restarts_in_window``, ``restart_pending``, ``gave_up``, ``waiting``
        (futures waiting for a child), ``last_exit`` (None, or a dict with ``description``,
        ``how``, ``exit_status``, ``signal``, ``requested``), and the current child's
        requests: ``sent``, ``answered``, ``failed``, ``in_flight`` (all 0 when no child
        is connected; a new child starts from 0).
        """
        last_exit: dict[str, Any] | None = None
        if self._last_exit is not None:
            last_exit = {
                "description": self._last_exit.describe(),
                "how": self._last_exit.how,
                "exit_status": self._last_exit.exit_status,
                "signal": self._last_exit.signal,
                "requested": self._last_exit_requested,
            }
        requests = {"sent": 0, "answered": 0, "failed": 0, "in_flight": 0}
        connection_stats = getattr(self._connection, "stats", None)
        if callable(connection_stats):
            # Connection.stats() takes only the connection's own lock: safe from this thread.
            requests.update(connection_stats())
        return {
            "name": self._name,
            "mode": self._mode.value,
            "pid": self._pid,
            "generation": self._generation,
            "uptime": None if self._ready_at is None else self._clock() - self._ready_at,
            "restarts": self._history.total,
            "restarts_in_window": self._history.in_window,
            "restart_pending": self._restart is RestartState.PENDING,
            "gave_up": self._restart is RestartState.GAVE_UP,
            "waiting": len(self._get_waiters),
            "last_exit": last_exit,
            **requests,
        }

    # --- helpers ----------------------------------------------------------------------------

    def _launch(self, *, cause: str) -> ChildProcessTerminated | None:
        """Make the process actor of the child the mode just entered ``starting`` for. If the
        factory raises, or returns no ``ActorRef``, the launch failed: its termination, to go
        through the table."""
        generation = self._generation
        self._launch_cause = cause
        self._log.info("launching", generation=generation, argv=list(self._spec.argv))
        try:
            process = self._factory(self.actor_ref, generation, self._spec)
            if not isinstance(process, pykka.ActorRef):
                # Nobody would ever report this child: the start would wait for ever.
                raise TypeError(f"process_factory returned {process!r}, not an ActorRef")
            self._process = self._last_process = process
        except Exception as error:
            # The factory itself failed (it should report launch errors as a termination):
            # report it the same way, so waiters fail and the policy sees a failed start.
            self._log.exception("process_factory_failed", generation=generation)
            reason = TerminationReason(
                how="launch_failed",
                detail=f"cannot launch {list(self._spec.argv)!r}: {error}",
                launch_error=error if isinstance(error, OSError) else None,
            )
            return ChildProcessTerminated(generation, reason)
        return None

    def _publish(self, event: object) -> None:
        for subscriber in publish(self._subscribers, event):
            self._log.info("subscriber_gone", subscriber=str(subscriber))

    def _tell_process(self, message: object) -> None:
        if self._process is None:
            return
        try:
            self._process.tell(message)
        except pykka.ActorDeadError:
            # Its ChildProcessTerminated is on the way: a process actor reports as it stops,
            # whether it was stopped from outside (then it stops the child itself) or crashed.
            self._log.info(
                "process_actor_gone", generation=self._generation, message=repr(message)
            )

    def _fail_get_waiters(self, error: Callable[[], BaseException]) -> None:
        # One exception instance per future: a raised exception's traceback is mutated by
        # every thread that raises it.
        waiters, self._get_waiters = self._get_waiters, []
        for waiter in waiters:
            fail_future(waiter, error())

    def _termination_error(self, reason: TerminationReason) -> ProcessUnavailable:
        if reason.how == "launch_failed" and reason.launch_error is not None:
            return ProcessLaunchError(tuple(self._spec.argv), reason.launch_error)
        return ProcessUnavailable(reason.describe(), stderr_tail=reason.stderr_tail)

    def _closed_error(self) -> ControllerClosed:
        return ControllerClosed(f"controller {self._name!r} is closed")

    # --- end of life ------------------------------------------------------------------------

    def on_start(self) -> None:
        note_actor_thread(self.actor_urn)

    def on_stop(self) -> None:
        """Settle every future still held, stop a child still running, cancel the timer."""
        self._end_of_life(cause="stopped")

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Same as ``on_stop``: a crashed controller must not leave a future hanging."""
        self._log.error(
            "controller_failed",
            exc_info=(exception_type, exception_value, traceback)
            if exception_type is not None
            else None,
        )
        self._end_of_life(cause="failed")

    def _end_of_life(self, *, cause: str) -> None:
        # The actor takes no more messages: no restart can come, and nobody will hear how a
        # child still running ends.
        self._cancel_timer()
        if self._restart is RestartState.PENDING:
            self._restart = RestartState.IDLE
        abandoned = self._process
        if abandoned is not None:
            self._abandon_child(cause)
        self._settle_waiters()
        self._drain_inbox()
        if self._end_of_life_future is not None:
            result = self._close_result
            if result is None and abandoned is None:
                result = StopResult("not_running")
            actors = (self.actor_urn,) if self._last_process is None else (
                self.actor_urn, self._last_process.actor_urn
            )
            resolve_future(self._end_of_life_future,
                           EndOfLife(result, self.stats(), process=abandoned, actors=actors))

    def _abandon_child(self, cause: str) -> None:
        # Stop it rather than leave it orphaned; its exit will reach no one.
        self._tell_process(StopChild(self._generation))
        self._log.warning("controller_stopped_with_child", generation=self._generation, cause=cause)

    def _settle_waiters(self) -> None:
        self._fail_get_waiters(self._closed_error)
        for waiter in self._stop_waiters:
            fail_future(
                waiter,
                ControllerClosed(f"controller {self._name!r} stopped before its child had exited"),
            )
        self._stop_waiters = []
        for waiter in self._close_waiters:
            if self._close_result is not None:
                resolve_future(waiter, self._close_result)
            else:
                fail_future(waiter, self._closed_error())
        self._close_waiters = []

    def _drain_inbox(self) -> None:
        # Messages told before the actor stopped would otherwise sit unread with their
        # futures unset. pykka answers the ``ask()`` envelopes itself: put those back.
        foreign = []
        while not self.actor_inbox.empty():
            envelope = self.actor_inbox.get()
            message = envelope.message
            if isinstance(message, GetProcess):
                fail_future(message.reply_to, self._closed_error())
            elif isinstance(message, StopProcess | _Close):
                if self._process is None:
                    # No child is left to wait for.
                    resolve_future(
                        message.reply_to, self._close_result or StopResult("not_running")
                    )
                else:
                    fail_future(message.reply_to, self._closed_error())
            elif isinstance(message, _GetMode | _GetStats):
                _QUERIES[type(message)](self, message)
            elif envelope.reply_to is not None:
                foreign.append(envelope)
        for envelope in foreign:
            self.actor_inbox.put(envelope)


@dataclass(frozen=True)
class EndOfLife:
    """What a controller actor leaves its handle as it stops."""

    result: StopResult | None
    """How the last stop ended: the close's ``StopResult`` (also when the actors were stopped
    by ``ActorRegistry.stop_all()``, which closes the controller), ``StopResult("not_running")``
    if no child was left, or None if a child was still running (its process actor stops it,
    but how that ends reaches no one)."""
    stats: dict[str, Any]
    """The actor's last ``stats()``."""
    process: pykka.ActorRef[Any] | None = None
    """The process actor of a child still running, which stops it (None when none is left):
    what the controller's launcher holds (an ssh connection master) is released once it has
    stopped."""
    actors: tuple[str, ...] = ()
    """The urns of this actor and of its last process actor, whose threads a ``close()``
    waits to end (they end just after this record is set)."""


_Effect = Callable[[ControllerActor, Any], ChildProcessTerminated | None]

_ACTIONS: Final[Mapping[Action, _Effect]] = {
    Action.LAUNCH: ControllerActor._launch_for_caller,
    Action.RESTART: ControllerActor._restart_now,
    Action.QUEUE_GET: ControllerActor._queue_get,
    Action.WAIT_FOR_RESTART: ControllerActor._wait_for_restart,
    Action.HAND_OUT: ControllerActor._hand_out,
    Action.REFUSE_LOST: ControllerActor._refuse_lost,
    Action.REFUSE_STOPPING: ControllerActor._refuse_stopping,
    Action.REFUSE_CLOSED: ControllerActor._refuse_closed,
    Action.NOTHING_TO_STOP: ControllerActor._nothing_to_stop,
    Action.AWAIT_EXIT: ControllerActor._await_exit,
    Action.STOP_CHILD: ControllerActor._stop_child,
    Action.RELEASE_WAITERS: ControllerActor._release_waiters,
    Action.SHUT_DOWN_STARTED: ControllerActor._shut_down_started,
    Action.FAILED_START: ControllerActor._failed_start,
    Action.CHILD_LOST: ControllerActor._child_lost,
    Action.CHILD_STOPPED: ControllerActor._child_stopped,
    Action.FINISH_CLOSE: ControllerActor._finish_close_on_exit,
    Action.IGNORE_STALE: ControllerActor._ignore_stale,
    Action.IGNORE_TIMER: ControllerActor._ignore_timer,
    Action.LOG_UNEXPECTED: ControllerActor._log_unexpected,
}
"""The method that runs each action. An action may return one follow-up message (a launch
that failed at once), which goes through ``TRANSITIONS`` before anything else."""

_GUARDS: Final[Mapping[Guard, Callable[[ControllerActor, Any], bool]]] = {
    Guard.STALE: ControllerActor._is_stale,
    Guard.CLOSING: ControllerActor._is_closing,
    Guard.RESTART_PENDING: ControllerActor._is_restart_pending,
    Guard.STALE_TIMER: ControllerActor._is_stale_timer,
    Guard.CONNECTION_LOST: ControllerActor._is_connection_lost,
}

_QUERIES: Final[Mapping[type, Callable[[ControllerActor, Any], None]]] = {
    Subscribe: ControllerActor._subscribe,
    _GetMode: ControllerActor._get_mode,
    _GetStats: ControllerActor._get_stats,
    _HurryStop: ControllerActor._tell_process,
}
"""Messages handled the same way in every mode (answered, or passed on to the process actor);
they never change it."""
