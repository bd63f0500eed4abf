"""The controller actor: the seed's five modes, as one transition table.

Everything that changes the controller's mode lives in this module, in ``TRANSITIONS``: a
table keyed by (mode, message type) whose values are the handler methods. The table
implements the seed's contract (``ProcessController`` of Divmod Axiom), quoted here verbatim:

    Mode is one of
    'stopped' (no process running or starting)
    'starting' (process begun but not ready for requests)
    'ready' (process ready for requests)
    'stopping' (process being torn down)
    'waiting_ready' (process beginning but will be shut down
    as soon as it starts up)
    Transitions are as follows
    getProcess:
    stopped -> starting:
    launch process
    create/save in waitingForStartup/return Deferred
    starting -> starting:
    create/save/return Deferred
    ready -> ready:
    return saved process
    stopping:
    return failing Deferred indicating transient failure
    waiting_ready:
    return failing Deferred indicating transient failure
    stopProcess:
    stopped -> stopped:
    return succeeding Deferred
    starting -> waiting_ready:
    create Deferred, add transient failure errback handler, return
    ready -> stopping:
    call shutdown on process
    return Deferred which fires when shutdown is done
    childProcessCreated:
    starting -> ready:
    callback saved Deferreds
    clear saved Deferreds
    waiting_ready:
    errback saved Deferred indicating transient failure
    return _shutdownIndexerProcess()
    childProcessTerminated:
    starting -> stopped:
    errback saved Deferreds indicating transient failure
    waiting_ready -> stopped:
    errback saved Deferreds indicating transient failure
    ready -> stopped:
    drop reference to process object
    stopping -> stopped:
    Callback saved shutdown deferred

Deferreds became reply futures carried in the messages (``GetProcess.reply_to``), and the
process object became a process actor made by a ``ProcessFactory``. Where this table differs
from the original code (not from its documentation):

* Every message about a child carries the generation the controller gave it at launch; one
  from an older (or unknown) generation is logged as ``stale_message`` and ignored, so a late
  message from a dead child can never move the mode.
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
* Restart policy (an extension): after an unrequested termination the ``RestartPolicy`` may
  schedule a restart after a backoff. During that backoff the mode stays ``stopped`` but a
  restart is *pending*: a ``GetProcess`` then queues its future for the coming child instead of
  launching at once; a ``StopProcess`` cancels the restart, fails those futures with
  ``ProcessUnavailable`` and resolves ``not_running``. Past the policy's intensity limit the
  controller gives up (``GaveUp`` event, ``gave_up`` log line) until the next ``GetProcess``.
* Closing (``_Close``) stops the child as ``StopProcess`` does, then stops the actor; from then
  on every ``GetProcess`` fails with ``ControllerClosed``. If the actor dies for any reason,
  every future it holds (or finds in its inbox) is settled, so nothing is left hanging.

The actor never blocks: it never waits on another actor's future, and the restart timer's
thread only ``tell()``s the actor that the timer fired.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from types import TracebackType
from typing import Any, Final

import pykka

from juicectl._log import get_logger
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
    _RestartDue,
)
from juicectl.policy import LaunchSpec, RestartPolicy

__all__ = [
    "TRANSITIONS",
    "ControllerActor",
    "Mode",
    "ProcessFactory",
    "fail_future",
    "resolve_future",
]

log = get_logger(__name__)

ProcessFactory = Callable[[pykka.ActorRef[Any], int, LaunchSpec], pykka.ActorRef[Any]]
"""Makes the process actor of one child: ``factory(controller_ref, generation, spec)`` returns
an already started actor ref. It must not block; the child reports back with
``ChildProcessCreated`` / ``ChildProcessTerminated`` messages to ``controller_ref``."""


class Mode(StrEnum):
    """The controller's mode. The values are the seed's names; ``Mode.READY == "ready"``."""

    STOPPED = "stopped"
    """No process running or starting (a restart may be pending, see the module docs)."""
    STARTING = "starting"
    """Process begun but not ready for requests."""
    READY = "ready"
    """Process ready for requests."""
    STOPPING = "stopping"
    """Process being torn down."""
    WAITING_READY = "waiting_ready"
    """Process beginning, but will be shut down as soon as it starts up."""


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
    ) -> None:
        super().__init__()
        self._name = name
        self._spec = spec
        self._factory = process_factory
        self._policy = policy
        self._clock = clock
        self._subscribers: list[pykka.ActorRef[Any]] = list(subscribers)
        self._log = log.bind(controller=name)

        self._mode = Mode.STOPPED
        self._generation = 0
        """The generation of the last child launched (0: none yet)."""
        self._process: pykka.ActorRef[Any] | None = None
        self._connection: Any = None
        self._pid: int | None = None
        self._ready_at: float | None = None
        self._stop_requested = False
        """Whether a stop was asked for since the current child launched."""
        self._launch_cause = ""
        """What launched the current child: ``"GetProcess"`` or ``"restart"``."""

        self._get_waiters: list[Any] = []
        self._stop_waiters: list[Any] = []
        self._close_waiters: list[Any] = []
        self._closing = False
        self._close_result: StopResult | None = None

        self._timer: TimerHandle | None = None
        self._restart_token = 0
        self._restart_pending = False
        self._restart_times: deque[float] = deque()
        self._restarts_total = 0
        self._streak = 0
        self._gave_up = False
        self._last_exit: TerminationReason | None = None
        self._last_exit_requested = False

    # --- dispatch ---------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Dispatch ``message``: queries at once, everything else through ``TRANSITIONS``."""
        if isinstance(message, ChildProcessCreated | ChildProcessTerminated) and (
            message.generation != self._generation or self._generation == 0
        ):
            self._log.info(
                "stale_message",
                message=type(message).__name__,
                generation=message.generation,
                current_generation=self._generation,
                mode=self._mode.value,
            )
            return None
        if isinstance(message, GetProcess) and self._closing:
            fail_future(message.reply_to, self._closed_error())
            return None
        query = _QUERIES.get(type(message))
        if query is not None:
            query(self, message)
            return None
        handler = TRANSITIONS.get((self._mode, type(message)))
        if handler is None:
            self._log.warning("unexpected_message", message=repr(message), mode=self._mode.value)
            return None
        handler(self, message)
        return None

    # --- GetProcess -------------------------------------------------------------------------

    def _get_in_stopped(self, message: GetProcess) -> None:
        self._get_waiters.append(message.reply_to)
        if self._restart_pending:
            # A restart is on its way: wait for that child rather than launch a second one.
            self._log.debug("get_process_waits_for_restart", waiting=len(self._get_waiters))
            return
        if self._gave_up:
            self._log.info("restart_count_reset", cause="GetProcess")
        # A launch asked for by a caller starts the restart accounting afresh.
        self._gave_up = False
        self._restart_times.clear()
        self._streak = 0
        self._launch(cause="GetProcess")

    def _get_queue(self, message: GetProcess) -> None:
        self._get_waiters.append(message.reply_to)

    def _get_answer(self, message: GetProcess) -> None:
        if getattr(self._connection, "closed", False) is True:
            # The child is going (its stdout closed, or it broke the protocol) but its exit
            # has not been reported yet: a dead connection would only fail every call.
            fail_future(
                message.reply_to,
                ProcessUnavailable(
                    f"controller {self._name!r}: the connection to child {self._pid} was "
                    "lost; try again once it has exited"
                ),
            )
            return
        resolve_future(message.reply_to, self._connection)

    def _get_refuse(self, message: GetProcess) -> None:
        fail_future(
            message.reply_to,
            ProcessUnavailable(
                f"controller {self._name!r} is stopping its child ({self._mode.value}); "
                "try again once it has stopped"
            ),
        )

    # --- StopProcess ------------------------------------------------------------------------

    def _stop_in_stopped(self, message: StopProcess) -> None:
        self._cancel_restart(cause="StopProcess")
        resolve_future(message.reply_to, StopResult("not_running"))

    def _stop_when_started(self, message: StopProcess) -> None:
        # The seed's row: shut the child down as soon as it is up. The future waits for the
        # exit, not for the start (flaw 2 of the original).
        self._stop_requested = True
        self._stop_waiters.append(message.reply_to)
        self._set_mode(Mode.WAITING_READY, cause="StopProcess")

    def _stop_shutdown(self, message: StopProcess) -> None:
        self._stop_requested = True
        self._stop_waiters.append(message.reply_to)
        self._set_mode(Mode.STOPPING, cause="StopProcess")
        self._tell_process(StopChild(self._generation))

    def _stop_queue(self, message: StopProcess) -> None:
        self._stop_requested = True
        self._stop_waiters.append(message.reply_to)

    # --- ChildProcessCreated (current generation) ------------------------------------------

    def _created_ready(self, message: ChildProcessCreated) -> None:
        self._pid = message.pid
        self._connection = message.connection
        self._ready_at = self._clock()
        self._set_mode(Mode.READY, cause="ChildProcessCreated")
        self._publish(ProcessStarted(self._name, message.generation, message.pid))
        waiters, self._get_waiters = self._get_waiters, []
        for waiter in waiters:
            resolve_future(waiter, message.connection)

    def _created_shutdown(self, message: ChildProcessCreated) -> None:
        self._pid = message.pid
        self._fail_get_waiters(
            lambda: ProcessUnavailable(
                f"controller {self._name!r} stopped its child as soon as it started: "
                "a stop was requested while it was starting"
            )
        )
        self._set_mode(Mode.STOPPING, cause="ChildProcessCreated")
        self._tell_process(StopChild(message.generation))

    def _created_unexpected(self, message: ChildProcessCreated) -> None:
        # The current child said twice that it is ready (or after it ended): nothing to
        # change, but a process actor that does this has a bug worth seeing.
        self._log.warning(
            "unexpected_message",
            message="ChildProcessCreated",
            generation=message.generation,
            pid=message.pid,
            mode=self._mode.value,
        )

    # --- ChildProcessTerminated (current generation) ---------------------------------------

    def _terminated(self, message: ChildProcessTerminated) -> None:
        reason = message.reason
        old = self._mode
        requested = self._stop_requested
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
        if self._pid is None:
            # A child that died before it was ready: its pid is known only from the report,
            # and the mode_changed line should name it.
            self._pid = reason.pid
        self._set_mode(Mode.STOPPED, cause="ChildProcessTerminated")
        self._process = None
        self._connection = None
        self._pid = None
        self._ready_at = None

        result = StopResult(how=reason.how, reason=reason)
        waiters, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters:
            resolve_future(waiter, result)

        if self._closing or requested:
            self._fail_get_waiters(lambda: self._termination_error(reason))
            if self._closing:
                self._finish_close(result)
            return
        self._publish(ProcessTerminated(self._name, message.generation, reason))
        # A child that never got ready is a failed start, whatever its exit status.
        failed_start = old in (Mode.STARTING, Mode.WAITING_READY)
        self._consider_restart(reason, abnormal=reason.abnormal or failed_start, uptime=uptime)
        if failed_start and self._launch_cause == "restart" and self._restart_pending:
            # Callers waiting for an automatic restart wait for the next one, until a child
            # gets ready or the policy gives up (their own timeouts bound the wait). A start
            # a caller asked for fails its waiters at once, as the seed's table says.
            if self._get_waiters:
                self._log.info("waiters_wait_for_next_restart", waiting=len(self._get_waiters))
        else:
            self._fail_get_waiters(lambda: self._termination_error(reason))

    def _terminated_unexpected(self, message: ChildProcessTerminated) -> None:
        self._log.warning(
            "unexpected_message",
            message="ChildProcessTerminated",
            generation=message.generation,
            mode=self._mode.value,
        )

    # --- restarts ---------------------------------------------------------------------------

    def _consider_restart(
        self, reason: TerminationReason, *, abnormal: bool, uptime: float | None
    ) -> None:
        policy = self._policy
        if not policy.should_restart(requested=False, abnormal=abnormal):
            return
        if uptime is not None and uptime >= policy.reset_after:
            self._streak = 0
        now = self._clock()
        while self._restart_times and now - self._restart_times[0] > policy.window:
            self._restart_times.popleft()
        if len(self._restart_times) >= policy.max_restarts:
            self._gave_up = True
            self._log.warning(
                "gave_up",
                restarts=len(self._restart_times),
                window=policy.window,
                max_restarts=policy.max_restarts,
                last_exit=reason.describe(),
            )
            self._publish(GaveUp(self._name, len(self._restart_times), policy.window, reason))
            return
        delay = policy.delay(self._streak)
        self._streak += 1
        self._restart_token += 1
        self._restart_pending = True
        token = self._restart_token
        ref = self.actor_ref

        def due() -> None:
            # Runs on the timer's thread: only tell the actor, never touch its state.
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(_RestartDue(token))

        self._timer = call_later(delay, due)
        self._log.info(
            "restart_scheduled",
            delay=delay,
            attempt=self._streak,
            restarts_in_window=len(self._restart_times),
            last_exit=reason.describe(),
        )

    def _restart_due(self, message: _RestartDue) -> None:
        if not self._restart_pending or message.token != self._restart_token:
            self._log.debug("stale_restart_timer", token=message.token)
            return
        self._restart_pending = False
        self._timer = None
        self._restart_times.append(self._clock())
        self._restarts_total += 1
        self._launch(cause="restart")

    def _restart_stale(self, message: _RestartDue) -> None:
        # A restart is only ever pending in ``stopped``; any other mode means it was
        # superseded (a caller's launch) or cancelled.
        self._log.debug("stale_restart_timer", token=message.token, mode=self._mode.value)

    def _cancel_restart(
        self, *, cause: str, error: Callable[[], BaseException] | None = None
    ) -> None:
        if not self._restart_pending:
            return
        self._restart_pending = False
        self._restart_token += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._log.info("restart_cancelled", cause=cause, waiting=len(self._get_waiters))
        self._fail_get_waiters(
            error
            or (
                lambda: ProcessUnavailable(
                    f"controller {self._name!r}: the pending restart was cancelled by {cause}"
                )
            )
        )

    # --- closing ----------------------------------------------------------------------------

    def _close_now(self, message: _Close) -> None:
        self._closing = True
        self._close_waiters.append(message.reply_to)
        self._cancel_restart(cause="close", error=self._closed_error)
        self._finish_close(StopResult("not_running"))

    def _close_when_started(self, message: _Close) -> None:
        self._begin_close(message)
        self._stop_requested = True
        self._set_mode(Mode.WAITING_READY, cause="close")

    def _close_shutdown(self, message: _Close) -> None:
        self._begin_close(message)
        self._stop_requested = True
        self._set_mode(Mode.STOPPING, cause="close")
        self._tell_process(StopChild(self._generation))

    def _close_queue(self, message: _Close) -> None:
        self._begin_close(message)
        self._stop_requested = True

    def _begin_close(self, message: _Close) -> None:
        self._closing = True
        self._close_waiters.append(message.reply_to)
        # Nobody will ever hand these a connection now.
        self._fail_get_waiters(self._closed_error)

    def _finish_close(self, result: StopResult) -> None:
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
            "restarts": self._restarts_total,
            "restarts_in_window": len(self._restart_times),
            "restart_pending": self._restart_pending,
            "gave_up": self._gave_up,
            "waiting": len(self._get_waiters),
            "last_exit": last_exit,
            **requests,
        }

    # --- helpers ----------------------------------------------------------------------------

    def _launch(self, *, cause: str) -> None:
        self._generation += 1
        self._stop_requested = False
        self._launch_cause = cause
        generation = self._generation
        self._log.info("launching", generation=generation, argv=list(self._spec.argv))
        try:
            self._process = self._factory(self.actor_ref, generation, self._spec)
        except Exception as error:
            # The factory itself failed (it should report launch errors as a termination):
            # report it the same way, so waiters fail and the policy sees a failed start.
            self._log.exception("process_factory_failed", generation=generation)
            self._set_mode(Mode.STARTING, cause=cause)
            reason = TerminationReason(
                how="launch_failed",
                detail=f"cannot launch {list(self._spec.argv)!r}: {error}",
                launch_error=error if isinstance(error, OSError) else None,
            )
            self._terminated(ChildProcessTerminated(generation, reason))
            return
        self._set_mode(Mode.STARTING, cause=cause)

    def _set_mode(self, new: Mode, *, cause: str) -> None:
        old, self._mode = self._mode, new
        self._log.info(
            "mode_changed",
            old=old.value,
            new=new.value,
            cause=cause,
            generation=self._generation,
            pid=self._pid,
        )
        self._publish(ModeChanged(self._name, old.value, new.value, cause, self._generation))

    def _publish(self, event: object) -> None:
        for subscriber in publish(self._subscribers, event):
            self._log.info("subscriber_gone", subscriber=str(subscriber))

    def _tell_process(self, message: object) -> None:
        if self._process is None:
            return
        try:
            self._process.tell(message)
        except pykka.ActorDeadError:
            # Its ChildProcessTerminated is on the way (or the actor crashed): log it, the
            # termination (or our on_stop) settles the waiters.
            self._log.warning(
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._restart_pending = False
        if self._process is not None and self._close_result is None:
            # The controller goes away with a child still running: stop it rather than
            # leave it orphaned. Nobody will hear how it ends.
            self._tell_process(StopChild(self._generation))
            self._log.warning(
                "controller_stopped_with_child", generation=self._generation, cause=cause
            )
        closed = self._closed_error
        self._fail_get_waiters(closed)
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
                fail_future(waiter, closed())
        self._close_waiters = []
        self._drain_inbox()

    def _drain_inbox(self) -> None:
        # Messages told before the actor stopped would otherwise sit unread with their
        # futures unset. pykka answers the ``ask()`` envelopes itself: put those back.
        foreign = []
        no_child = self._process is None or self._close_result is not None
        while not self.actor_inbox.empty():
            envelope = self.actor_inbox.get()
            message = envelope.message
            if isinstance(message, GetProcess):
                fail_future(message.reply_to, self._closed_error())
            elif isinstance(message, StopProcess | _Close):
                if no_child:
                    resolve_future(
                        message.reply_to, self._close_result or StopResult("not_running")
                    )
                else:
                    fail_future(message.reply_to, self._closed_error())
            elif isinstance(message, _GetMode):
                resolve_future(message.reply_to, self._mode)
            elif isinstance(message, _GetStats):
                resolve_future(message.reply_to, self.stats())
            elif envelope.reply_to is not None:
                foreign.append(envelope)
        for envelope in foreign:
            self.actor_inbox.put(envelope)


_Handler = Callable[[ControllerActor, Any], None]

_S, _T, _R, _P, _W = (
    Mode.STOPPED,
    Mode.STARTING,
    Mode.READY,
    Mode.STOPPING,
    Mode.WAITING_READY,
)

TRANSITIONS: Final[Mapping[tuple[Mode, type], _Handler]] = {
    # getProcess
    (_S, GetProcess): ControllerActor._get_in_stopped,  # -> starting (or wait for a restart)
    (_T, GetProcess): ControllerActor._get_queue,
    (_R, GetProcess): ControllerActor._get_answer,
    (_P, GetProcess): ControllerActor._get_refuse,
    (_W, GetProcess): ControllerActor._get_refuse,
    # stopProcess
    (_S, StopProcess): ControllerActor._stop_in_stopped,
    (_T, StopProcess): ControllerActor._stop_when_started,  # -> waiting_ready
    (_R, StopProcess): ControllerActor._stop_shutdown,  # -> stopping
    (_P, StopProcess): ControllerActor._stop_queue,
    (_W, StopProcess): ControllerActor._stop_queue,
    # childProcessCreated (current generation)
    (_S, ChildProcessCreated): ControllerActor._created_unexpected,
    (_T, ChildProcessCreated): ControllerActor._created_ready,  # -> ready
    (_R, ChildProcessCreated): ControllerActor._created_unexpected,
    (_P, ChildProcessCreated): ControllerActor._created_unexpected,
    (_W, ChildProcessCreated): ControllerActor._created_shutdown,  # -> stopping
    # childProcessTerminated (current generation)
    (_S, ChildProcessTerminated): ControllerActor._terminated_unexpected,
    (_T, ChildProcessTerminated): ControllerActor._terminated,  # -> stopped
    (_R, ChildProcessTerminated): ControllerActor._terminated,  # -> stopped
    (_P, ChildProcessTerminated): ControllerActor._terminated,  # -> stopped
    (_W, ChildProcessTerminated): ControllerActor._terminated,  # -> stopped
    # restart timer (extension)
    (_S, _RestartDue): ControllerActor._restart_due,  # -> starting
    (_T, _RestartDue): ControllerActor._restart_stale,
    (_R, _RestartDue): ControllerActor._restart_stale,
    (_P, _RestartDue): ControllerActor._restart_stale,
    (_W, _RestartDue): ControllerActor._restart_stale,
    # close (extension)
    (_S, _Close): ControllerActor._close_now,  # actor stops
    (_T, _Close): ControllerActor._close_when_started,  # -> waiting_ready
    (_R, _Close): ControllerActor._close_shutdown,  # -> stopping
    (_P, _Close): ControllerActor._close_queue,
    (_W, _Close): ControllerActor._close_queue,
}
"""Every transition: (mode, message type) -> handler. Child messages reach it only when they
carry the current generation; ``GetProcess`` only while the controller is not closing."""

_QUERIES: Final[Mapping[type, _Handler]] = {
    Subscribe: ControllerActor._subscribe,
    _GetMode: ControllerActor._get_mode,
    _GetStats: ControllerActor._get_stats,
}
"""Messages answered the same way in every mode; they never change it."""
