"""The pool actor: every lifecycle decision about a pool's workers, and the table they follow.

Theory of operation
-------------------
A pool is one actor that owns one ``ProcessController`` per worker. Each worker has a *state*
(``WorkerState``); ``TRANSITIONS`` maps (state, event) to rows ``Transition(next state,
action, when=guard)``, tried in order (the first whose guard holds wins). ``_on_event`` sets
the state (logged as ``worker_changed`` and told to subscribers as ``WorkerChanged``: that
is the whole transition), then runs the row's action. Actions only do effects: they start,
publish, retire and close workers, and settle requests; the one thing an action may hand
back is a follow-up event for a worker (a retiring worker with nothing in flight is at once
``drained``; the old worker of a recycle is ``replaced`` once its replacement is ready).

Events come from three places, as messages, never by waiting:

* each worker's **controller**, which the pool actor subscribes to: ``ProcessStarted``
  (``started``: a restart came up), ``ProcessTerminated`` (``lost``: the child ended unasked),
  ``GaveUp`` (``gave_up``), and the answers to the pool's own ``get_process()`` and
  ``close()``, told back by their callbacks and helper threads (``ready``, ``start_failed``,
  ``closed``);
* the **request path** (``juicectl.pool._dispatch``), which tells only what it alone sees:
  ``RecycleWanted`` (``recycle_due``), ``RouteDrained`` (``drained``) and ``GrowWanted``;
* the pool's **timer** (``Tick``: ``idle`` and age ``recycle_due``) and its **handle**
  (``StopPool``: ``stop`` for every worker).

A worker's life::

    starting --ready--> ready --recycle_due--> ready (a replacement starts in its slot)
       |  ^               |  \\--replaced / idle--> retiring --drained--> stopping --closed--> gone
       |  |started       lost                                              ^
       |  |               v                                                |
       +--start_failed--> lost --gave_up (or no restart to come)--> stopping (replace or leave)

``stop`` takes every state but ``gone`` to ``stopping``. The workers' children are stopped by
their own controllers, each under its restart policy and its stop escalation: the pool never
signals a child itself. Stopping the pool closes every controller at once, each on a short
helper thread (``close()`` waits, and an actor must not), so N workers stop in one
controller's stop bound.

Slots
-----
A *slot* is a place in the pool; sticky keys map to slots (``_dispatch._slot_for``). A
worker's replacement (recycling, or after giving up) takes its slot; growing adds a slot;
shrinking (``idle``) and leaving remove one. ``max_size`` bounds the slots, and each worker
that leaves lowers it for good, so that a worker that cannot start is not replaced for ever.
Each routing snapshot also counts the slots with a worker on its way and none serving
(``coming``): the request path then keeps each serving worker to its even share.

After a loss
------------
A worker's requests are settled (``Dispatcher.settle_lost``) only once its child is known to
be gone: at ``lost`` (the controller reports after the child was reaped and its output read to
the end) or at ``closed``. Re-sending by write order is trusted only when the connection ended
at the child's exit (``TerminationReason.how`` is ``exited`` or ``signaled``); when juicectl
ended it earlier (a protocol error, say), the child may have gone on running what it had read,
so only what was never written goes again.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Final

import pykka

from juicectl._future import ReplyFuture
from juicectl._log import get_logger
from juicectl._threads import start_daemon
from juicectl._timer import TimerHandle, call_later
from juicectl.actors.controller import ControllerActor, EndOfLife
from juicectl.actors.process import ProcessActor
from juicectl.actors.subscribers import publish, subscriber_for
from juicectl.connection import Connection
from juicectl.controller import ProcessController
from juicectl.exceptions import ControllerClosed, ProcessUnavailable
from juicectl.launch import LaunchSession, open_session
from juicectl.messages import (
    GaveUp,
    ModeChanged,
    ProcessStarted,
    ProcessTerminated,
    StopResult,
    TerminationReason,
    _HurryStop,
)
from juicectl.policy import GiveUp, LaunchSpec, RestartHistory, RestartPolicy
from juicectl.pool._dispatch import (
    Dispatcher,
    GrowWanted,
    RecycleWanted,
    Route,
    RouteDrained,
)
from juicectl.pool._messages import (
    GetPoolStats,
    ReplaceDue,
    StopPool,
    Tick,
    WorkerChanged,
    WorkerClosed,
    WorkerGaveUp,
    WorkerLost,
    WorkerReady,
    WorkerStartFailed,
)
from juicectl.pool._options import PoolOptions

__all__ = ["TRANSITIONS", "Action", "Event", "Guard", "PoolActor", "Transition", "WorkerState"]

log = get_logger(__name__)

Hook = Callable[[], Any] | pykka.ActorRef[Any] | None


class WorkerState(StrEnum):
    """Where one worker of a pool stands."""

    STARTING = "starting"
    """Its controller is getting a child ready; it takes no requests yet."""
    READY = "ready"
    """It takes requests (its route is in the snapshot)."""
    LOST = "lost"
    """Its child ended unasked; its controller restarts it under its restart policy."""
    RETIRING = "retiring"
    """It takes no new requests and is stopped once those in flight are answered."""
    STOPPING = "stopping"
    """Its controller is being closed (the child stopped, its actors ended)."""
    GONE = "gone"
    """Closed and out of the pool."""


class Event(StrEnum):
    """What happens to a worker (see the module's theory of operation)."""

    READY = "ready"
    START_FAILED = "start_failed"
    STARTED = "started"
    LOST = "lost"
    GAVE_UP = "gave_up"
    RECYCLE_DUE = "recycle_due"
    REPLACED = "replaced"
    IDLE = "idle"
    DRAINED = "drained"
    STOP = "stop"
    CLOSED = "closed"


class Guard(StrEnum):
    """A condition a row needs besides the state and the event."""

    STALE = "stale"
    """The report is about another child of the worker than the one it serves with."""
    CLOSING = "closing"
    """The pool is stopping: nothing new starts."""
    NO_RESTART = "no_restart"
    """The worker's restart policy will not restart the child that just ended."""
    REPLACEMENT_COMING = "replacement_coming"
    """A replacement for this worker is starting: no restart of its own is wanted."""
    RECYCLING = "recycling"
    """Another worker's replacement is starting: recycles start one at a time."""


class Action(StrEnum):
    """What a row does once the state is set: effects only."""

    ASK_CONNECTION = "ask_connection"
    """Ask the controller for its ready child's connection (``get_process``)."""
    SERVE = "serve"
    """Publish the worker's route; if it replaces another, that one is ``replaced``."""
    NOTE_START_FAILED = "note_start_failed"
    """Log it; a launch error with no worker serving fails the held requests at once."""
    SETTLE_LOSS = "settle_loss"
    """Take its route out, re-send what its child cannot have started, fail the rest."""
    SETTLE_AND_CLOSE = "settle_and_close"
    """As ``settle_loss``, then close the worker's controller."""
    START_REPLACEMENT = "start_replacement"
    """Start a new worker in its slot, to take over once ready."""
    AWAIT_RECYCLE = "await_recycle"
    """Note it as due: its replacement starts once the one starting now is ready."""
    RETIRE = "retire"
    """Take its route out of the snapshot; ``drained`` follows once nothing is in flight."""
    SHRINK = "shrink"
    """As ``retire``, and its slot leaves the pool."""
    CLOSE = "close"
    """Close its controller on a helper thread (the child is stopped, in parallel)."""
    DEPART = "depart"
    """It gave up: close its controller; replace it after a backoff, or let its slot go."""
    REMOVE = "remove"
    """Settle what its connection still held, stop its hooks, drop it."""
    IGNORE = "ignore"
    """Nothing to do (logged at debug)."""
    IGNORE_STALE = "ignore_stale"
    """A report about an older child: logged, nothing changes."""


@dataclass(frozen=True)
class Transition:
    """One row: if ``when`` holds (or is None), go to ``next``, then run ``action``."""

    next: WorkerState
    """The worker's state after the event."""
    action: Action
    """The effects to run once the state is set."""
    when: Guard | None = None
    """The row applies only while this holds; rows are tried in order."""


_S, _E, _A, _G, _T = WorkerState, Event, Action, Guard, Transition

TRANSITIONS: Final[Mapping[tuple[WorkerState, Event], tuple[Transition, ...]]] = {
    # starting: the controller is getting a child ready
    (_S.STARTING, _E.READY): (_T(_S.READY, _A.SERVE),),
    (_S.STARTING, _E.START_FAILED): (
        _T(_S.STOPPING, _A.DEPART, when=_G.NO_RESTART),
        _T(_S.LOST, _A.NOTE_START_FAILED),
    ),
    (_S.STARTING, _E.LOST): (
        _T(_S.STOPPING, _A.DEPART, when=_G.NO_RESTART),
        _T(_S.LOST, _A.IGNORE),
    ),
    (_S.STARTING, _E.STARTED): (_T(_S.STARTING, _A.IGNORE),),
    (_S.STARTING, _E.GAVE_UP): (_T(_S.STOPPING, _A.DEPART),),
    (_S.STARTING, _E.STOP): (_T(_S.STOPPING, _A.CLOSE),),
    # ready: it takes requests
    (_S.READY, _E.LOST): (
        _T(_S.READY, _A.IGNORE_STALE, when=_G.STALE),
        _T(_S.STOPPING, _A.SETTLE_AND_CLOSE, when=_G.REPLACEMENT_COMING),
        _T(_S.STOPPING, _A.SETTLE_AND_CLOSE, when=_G.CLOSING),
        _T(_S.LOST, _A.SETTLE_LOSS),
    ),
    (_S.READY, _E.RECYCLE_DUE): (
        _T(_S.READY, _A.IGNORE, when=_G.CLOSING),
        _T(_S.READY, _A.IGNORE, when=_G.REPLACEMENT_COMING),
        _T(_S.READY, _A.AWAIT_RECYCLE, when=_G.RECYCLING),
        _T(_S.READY, _A.START_REPLACEMENT),
    ),
    (_S.READY, _E.REPLACED): (_T(_S.RETIRING, _A.RETIRE),),
    (_S.READY, _E.IDLE): (_T(_S.RETIRING, _A.SHRINK),),
    (_S.READY, _E.STOP): (_T(_S.STOPPING, _A.CLOSE),),
    (_S.READY, _E.STARTED): (_T(_S.READY, _A.IGNORE),),
    (_S.READY, _E.DRAINED): (_T(_S.READY, _A.IGNORE),),
    # lost: its controller restarts the child under the restart policy
    (_S.LOST, _E.STARTED): (
        _T(_S.STOPPING, _A.CLOSE, when=_G.REPLACEMENT_COMING),
        _T(_S.STARTING, _A.ASK_CONNECTION),
    ),
    (_S.LOST, _E.READY): (_T(_S.READY, _A.SERVE),),
    (_S.LOST, _E.GAVE_UP): (_T(_S.STOPPING, _A.DEPART),),
    (_S.LOST, _E.LOST): (
        _T(_S.STOPPING, _A.DEPART, when=_G.NO_RESTART),
        _T(_S.LOST, _A.IGNORE),
    ),
    (_S.LOST, _E.START_FAILED): (_T(_S.LOST, _A.NOTE_START_FAILED),),
    (_S.LOST, _E.STOP): (_T(_S.STOPPING, _A.CLOSE),),
    # retiring: no new requests; stopped once those in flight are answered
    (_S.RETIRING, _E.DRAINED): (_T(_S.STOPPING, _A.CLOSE),),
    (_S.RETIRING, _E.LOST): (
        _T(_S.RETIRING, _A.IGNORE_STALE, when=_G.STALE),
        _T(_S.STOPPING, _A.SETTLE_AND_CLOSE),
    ),
    (_S.RETIRING, _E.STOP): (_T(_S.STOPPING, _A.CLOSE),),
    # stopping: its controller is being closed
    (_S.STOPPING, _E.CLOSED): (_T(_S.GONE, _A.REMOVE),),
}
"""Every transition: (state, event) -> rows, the last of each without a guard. A pair that is
not here (a late report, a second stop) changes nothing and is logged at debug."""


@dataclass(eq=False)
class _Worker:
    """The pool actor's record of one worker (touched only by the actor)."""

    name: str
    slot: int
    controller: ProcessController
    hooks: list[pykka.ActorRef[Any]]
    session: LaunchSession  # its launcher, opened for its controller; closed after it
    state: WorkerState = WorkerState.STARTING
    connection: Connection | None = None
    route: Route | None = None
    ready_at: float | None = None
    replacing: _Worker | None = None  # the worker it takes over from, once ready
    replacement: _Worker | None = None  # the worker on its way to take over from it
    leaves_slot: bool = False  # its slot goes with it (shrink, leave)
    idle_ticks: int = 0
    calls_seen: int = 0
    last_reason: TerminationReason | None = None
    result: StopResult | None = None


@dataclass(eq=False)
class _Slot:
    """A place in the pool, and its record of replacements after giving up."""

    number: int
    history: RestartHistory
    placement: int  # which of the pool's placements (launchers) its workers all run with
    names: Any = field(default_factory=lambda: itertools.count(1))


class PoolActor(pykka.ThreadingActor):
    """Owns a pool's workers and decides their lives (see the module docstring).

    Args:
        name: the pool's name (workers are named after it).
        placements: how to launch each worker's child (the pool's own ``prepare`` already in
            it), one ``LaunchSpec`` per launcher the slots are spread over.
        policy: each worker's restart policy (and the pool's, for replacing one that gave up).
        options: the ``PoolOptions``.
        dispatcher: the pool's request path, shared with the handle.
        worker_subscribers: actor refs told every event of every worker's controller.
        on_process_startup, on_process_termination: each worker's hooks.
        subscribers: actor refs told the pool's own events.
        polling_placements: where the CPU rule lets only the first workers poll, each
            placement as those run it (None for a placement it does not reach); None when
            every worker runs its placement as it is.
        polling_workers: how many first workers (by slot, the pool's order) run those.
    """

    use_daemon_thread = True
    """As the controller actor's: a forgotten pool must not keep the program from exiting."""

    def __init__(
        self,
        name: str,
        placements: Sequence[LaunchSpec],
        policy: RestartPolicy,
        options: PoolOptions,
        dispatcher: Dispatcher,
        *,
        worker_subscribers: Sequence[pykka.ActorRef[Any]] = (),
        on_process_startup: Hook = None,
        on_process_termination: Hook = None,
        subscribers: Sequence[pykka.ActorRef[Any]] = (),
        polling_placements: Sequence[LaunchSpec | None] | None = None,
        polling_workers: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._name = name
        if not placements:
            raise ValueError("placements must hold at least one LaunchSpec")
        self._placements = tuple(placements)
        if polling_placements is not None and len(polling_placements) != len(placements):
            raise ValueError("polling_placements must hold one entry per placement")
        self._polling_placements = tuple(polling_placements or ())
        self._polling_workers = polling_workers
        self._policy = policy
        self._options = options
        self._dispatcher = dispatcher
        self._worker_subscribers = list(worker_subscribers)
        self._on_startup = on_process_startup
        self._on_termination = on_process_termination
        self._subscribers = list(subscribers)
        self._clock = clock
        self._log = log.bind(pool=name)

        self._workers: dict[str, _Worker] = {}
        self._slots: dict[int, _Slot] = {}
        self._slot_numbers = itertools.count(0)
        self._max_size = options.max_size  # lowered for good by each worker that leaves
        self._stopping = False
        # Why the last start failed, until a worker serves: calls fail with it meanwhile.
        self._start_error: ProcessUnavailable | None = None
        # The slots whose last start failed (until one of their workers serves): calls fail
        # at once only when every slot's has, not while another host's worker is on its way.
        self._failed_slots: set[int] = set()
        self._last_failure: str | None = None  # the last start failure or loss, for messages
        self._stop_waiters: list[ReplyFuture[dict[str, StopResult | None]]] = []
        self._results: dict[str, StopResult | None] = {}
        self._timers: list[TimerHandle] = []
        self._recycles_due: list[_Worker] = []  # waiting for the replacement starting now
        self._tick: TimerHandle | None = None
        self._ended = False  # _end_of_life() has run
        self._figures = {"started": 0, "recycled": 0, "replaced": 0, "left": 0, "grown": 0,
                         "shrunk": 0, "lost": 0}

    # --- start ------------------------------------------------------------------------------

    def on_start(self) -> None:
        """Start ``min_size`` workers at once, and the timer if idle or age limits are set."""
        try:
            for _ in range(self._options.min_size):
                self._add_slot()
            self._publish_routes()
            self._arm_tick()
        except Exception:
            # pykka stops an actor whose on_start raised without on_stop or on_failure: the
            # requests held for the first workers would wait forever, and the workers
            # started before the failure would run on.
            self._log.exception("pool_failed")
            self._end_of_life()
            self.stop()

    # --- dispatch ---------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Turn a message into a worker's event (or a pool-level step) and handle it."""
        handler = _HANDLERS.get(type(message))
        if handler is None:
            self._log.warning("unexpected_message", message=repr(message))
            return None
        handler(self, message)
        return None

    def _on_event(self, worker: _Worker, event: Event, message: Any = None) -> None:
        """Run ``event`` for ``worker`` through ``TRANSITIONS`` (and any follow-up)."""
        step: tuple[_Worker, Event] | None = (worker, event)
        while step is not None:
            worker, event = step
            rows = TRANSITIONS.get((worker.state, event))
            if rows is None:
                self._log.debug("event_ignored", worker=worker.name, state=worker.state.value,
                                on=event.value)
                return
            row = next(r for r in rows if r.when is None or _GUARDS[r.when](self, worker, message))
            self._enter(worker, row.next, event)
            step = _ACTIONS[row.action](self, worker, message)
            message = None

    def _enter(self, worker: _Worker, new: WorkerState, event: Event) -> None:
        old, worker.state = worker.state, new
        if old is new:
            return
        self._log.info("worker_changed", worker=worker.name, old=old.value, new=new.value,
                       cause=event.value)
        self._publish(WorkerChanged(self._name, worker.name, old.value, new.value, event.value))

    # --- message handlers -------------------------------------------------------------------

    def _worker_named(self, name: str) -> _Worker | None:
        return self._workers.get(name)

    def _handle_ready(self, message: WorkerReady) -> None:
        worker = self._worker_named(message.worker)
        if worker is not None:
            self._on_event(worker, Event.READY, message)

    def _handle_start_failed(self, message: WorkerStartFailed) -> None:
        worker = self._worker_named(message.worker)
        if worker is not None:
            self._on_event(worker, Event.START_FAILED, message)

    def _handle_started(self, message: ProcessStarted) -> None:
        worker = self._worker_named(message.controller)
        if worker is not None:
            self._on_event(worker, Event.STARTED, message)

    def _handle_terminated(self, message: ProcessTerminated) -> None:
        worker = self._worker_named(message.controller)
        if worker is not None:
            worker.last_reason = message.reason
            self._on_event(worker, Event.LOST, message)

    def _handle_gave_up(self, message: GaveUp) -> None:
        worker = self._worker_named(message.controller)
        if worker is not None:
            self._on_event(worker, Event.GAVE_UP, message)

    def _handle_recycle(self, message: RecycleWanted) -> None:
        worker = self._worker_named(message.worker)
        if worker is not None:
            self._on_event(worker, Event.RECYCLE_DUE, message)

    def _handle_drained(self, message: RouteDrained) -> None:
        worker = self._worker_named(message.worker)
        if worker is not None:
            self._on_event(worker, Event.DRAINED, message)

    def _handle_closed(self, message: WorkerClosed) -> None:
        worker = self._worker_named(message.worker)
        if worker is not None:
            worker.result = message.result
            self._on_event(worker, Event.CLOSED, message)

    def _handle_grow(self, _message: GrowWanted) -> None:
        starting = any(
            w.state is WorkerState.STARTING and w.replacing is None for w in self._workers.values()
        )
        if not self._stopping and not starting and len(self._slots) < self._max_size:
            self._figures["grown"] += 1
            self._add_slot()
        self._publish_routes()  # also lets callers ask again

    def _handle_tick(self, _message: Tick) -> None:
        self._tick = None
        if self._stopping:
            return
        options, now = self._options, self._clock()
        ready = [w for w in self._workers.values() if w.state is WorkerState.READY]
        # Slots, not workers: a worker and the replacement taking over from it are one.
        serving = len({w.slot for w in ready})
        # The newest slots first: the lowest keep their own busy polling (_spec_for).
        for worker in sorted(ready, key=lambda w: w.slot, reverse=True):
            route = worker.route
            assert route is not None
            if worker.replacement is not None:
                continue  # being recycled: its replacement takes its slot, idle or not
            age = options.recycle_after_seconds
            if age is not None and worker.ready_at is not None and now - worker.ready_at >= age:
                self._on_event(worker, Event.RECYCLE_DUE)
                continue
            if options.max_idle is None:
                continue
            if route.in_flight or route.calls != worker.calls_seen:
                worker.idle_ticks, worker.calls_seen = 0, route.calls
                continue
            worker.idle_ticks += 1
            if worker.idle_ticks * self._tick_interval() >= options.max_idle and (
                serving > options.min_size
            ):
                serving -= 1
                self._figures["shrunk"] += 1
                self._on_event(worker, Event.IDLE)
        self._arm_tick()

    def _handle_replace_due(self, message: ReplaceDue) -> None:
        slot = self._slots.get(message.slot)
        if slot is not None and not self._stopping:
            self._start_worker(slot)
            self._publish_routes()

    def _handle_hurry(self, message: _HurryStop) -> None:
        # A close interrupted (Ctrl-C): each worker stopping skips to SIGTERM.
        for worker in self._workers.values():
            with contextlib.suppress(pykka.ActorDeadError):
                worker.controller.actor_ref.tell(message)

    def _handle_stop(self, message: StopPool) -> None:
        self._stop_waiters.append(message.reply_to)
        if not self._stopping:
            self._stopping = True
            self._log.info("pool_stopping", workers=len(self._workers))
            self._dispatcher.close(ControllerClosed(f"pool {self._name!r} is closed"))
            self._cancel_timers()
            for worker in list(self._workers.values()):
                self._on_event(worker, Event.STOP)
        self._finish_stop_if_done()

    def _handle_stats(self, message: GetPoolStats) -> None:
        with contextlib.suppress(Exception):
            message.reply_to.try_set(self.stats())

    def _ignore(self, _message: Any) -> None:
        pass  # ModeChanged of a worker: its other events say what the pool needs

    # --- guards -----------------------------------------------------------------------------

    def _is_stale(self, worker: _Worker, message: Any) -> bool:
        connection = worker.connection
        generation = getattr(message, "generation", None)
        return connection is not None and generation is not None and (
            generation != connection.generation
        )

    def _is_closing(self, _worker: _Worker, _message: Any) -> bool:
        return self._stopping

    def _will_not_restart(self, _worker: _Worker, message: Any) -> bool:
        reason = getattr(message, "reason", None)
        abnormal = True if reason is None else reason.abnormal
        return not self._policy.should_restart(requested=False, abnormal=abnormal)

    def _replacement_coming(self, worker: _Worker, _message: Any) -> bool:
        return worker.replacement is not None

    def _recycling(self, _worker: _Worker, _message: Any) -> bool:
        # One replacement at a time: each is an interpreter starting, on the CPUs that serve.
        return any(
            w.replacing is not None and w.state is WorkerState.STARTING
            for w in self._workers.values()
        )

    # --- actions ----------------------------------------------------------------------------

    def _ask_connection(self, worker: _Worker, _message: Any) -> None:
        me, name = self.actor_ref, worker.name

        def answered(future: ReplyFuture[Connection]) -> None:
            # On the controller's thread: only tell the pool actor.
            try:
                connection = future.get(timeout=0)
            except BaseException as error:
                _tell(me, WorkerStartFailed(name, error))
            else:
                _tell(me, WorkerReady(name, connection))

        worker.controller.get_process().add_done_callback(answered)

    def _serve(self, worker: _Worker, message: WorkerReady) -> tuple[_Worker, Event] | None:
        connection = message.connection
        worker.connection = connection
        worker.route = Route(worker.slot, worker.name, connection, self._dispatcher)
        worker.ready_at = self._clock()
        worker.idle_ticks, worker.calls_seen = 0, 0
        self._start_error = None
        self._failed_slots.discard(worker.slot)
        if self._stopping:
            return (worker, Event.STOP)
        old = worker.replacing
        worker.replacing = None
        self._publish_routes()
        if old is not None:
            old.replacement = None
            self._next_recycle()
            if old.state is WorkerState.READY:
                self._figures["recycled"] += 1
                return (old, Event.REPLACED)
        return None

    def _next_recycle(self) -> None:
        while self._recycles_due and not self._stopping:
            due = self._recycles_due.pop(0)
            if due.state is WorkerState.READY and due.replacement is None:
                self._start_replacement(due, None)
                return

    def _note_start_failed(self, worker: _Worker, message: WorkerStartFailed) -> None:
        self._log.warning("worker_start_failed", worker=worker.name, error=str(message.error))
        if isinstance(message.error, ProcessUnavailable):
            # It could not be launched, or its child ended before it was ready: requests would
            # wait for restarts that likely fail alike. While no worker serves and every slot's
            # start has failed, they fail at once, with the reason, as a lone controller's do
            # (a worker still on its way elsewhere, on another host, may yet serve them).
            self._start_error = message.error
            self._failed_slots.add(worker.slot)
            self._last_failure = f"{worker.name}: {message.error}"
            self._publish_routes()

    def _settle_loss(self, worker: _Worker, message: ProcessTerminated) -> None:
        self._figures["lost"] += 1
        route, connection = worker.route, worker.connection
        worker.route = worker.connection = None
        worker.ready_at = None
        if route is not None:
            self._dispatcher.retire(route)
        self._publish_routes()
        if connection is None:
            return
        reason = message.reason
        # The connection ended at the child's exit, after its output was read to the end, only
        # when the child ended by itself: then the write order says what it can have started.
        order_known = reason.how in ("exited", "signaled")
        resent, failed = self._dispatcher.settle_lost(connection, order_known=order_known)
        self._last_failure = f"{worker.name}: {reason.describe()}"
        self._log.warning("worker_lost", worker=worker.name, reason=reason.describe(),
                          resent=resent, failed=failed)
        self._publish(WorkerLost(self._name, worker.name, reason, resent, failed))

    def _settle_and_close(self, worker: _Worker, message: ProcessTerminated) -> None:
        self._settle_loss(worker, message)
        self._close(worker, message)

    def _start_replacement(self, worker: _Worker, _message: Any) -> None:
        slot = self._slots.get(worker.slot)
        if slot is None:
            return
        worker.replacement = self._start_worker(slot, replacing=worker)

    def _await_recycle(self, worker: _Worker, _message: Any) -> None:
        if worker not in self._recycles_due:
            self._recycles_due.append(worker)

    def _retire(self, worker: _Worker, _message: Any) -> tuple[_Worker, Event] | None:
        route = worker.route
        self._publish_routes()
        if route is None or self._dispatcher.retire(route):
            return (worker, Event.DRAINED)
        return None

    def _shrink(self, worker: _Worker, message: Any) -> tuple[_Worker, Event] | None:
        worker.leaves_slot = True
        self._slots.pop(worker.slot, None)
        return self._retire(worker, message)

    def _close(self, worker: _Worker, _message: Any) -> None:
        if worker.route is not None:
            self._dispatcher.retire(worker.route)
        self._publish_routes()
        me, name = self.actor_ref, worker.name
        parts = (worker.controller, worker.hooks, worker.session)

        def close() -> None:
            result = None
            try:
                result = _close_worker(*parts)
            finally:
                _tell(me, WorkerClosed(name, result))

        if not start_daemon(close, f"juicectl-pool-close-{name}"):
            close()  # no thread to be had (at interpreter exit, on Python 3.12): here

    def _depart(self, worker: _Worker, message: Any) -> None:
        old = worker.replacing
        if old is not None:
            # A recycle's replacement that gave up: that recycle is over, the next may begin.
            old.replacement = None
            worker.replacing = None
            self._next_recycle()
            if old.state is WorkerState.READY:
                # The worker it was to take over from still serves, and its slot stays (an
                # age recycle is asked again once that age has passed anew). Were that worker
                # gone too, this is the slot's own give-up, below.
                old.ready_at = self._clock()
                self._log.warning("worker_gave_up", worker=worker.name, replaced=False,
                                  recycling=old.name)
                self._publish(WorkerGaveUp(self._name, worker.name, False))
                self._close(worker, message)
                return
        slot = self._slots.get(worker.slot)
        replaced = False
        if slot is not None and not self._stopping and self._options.on_give_up == "replace":
            decision = slot.history.decide(abnormal=True, uptime=None, now=self._clock())
            if decision is not None and not isinstance(decision, GiveUp):
                replaced = True
                self._figures["replaced"] += 1
                slot.history.restarted(self._clock())
                me, number = self.actor_ref, slot.number
                self._timers.append(
                    call_later(decision.delay, lambda: _tell(me, ReplaceDue(number)))
                )
        if not replaced:
            worker.leaves_slot = True
            if slot is not None and not self._stopping:
                self._figures["left"] += 1
                self._max_size = max(0, self._max_size - 1)
            self._slots.pop(worker.slot, None)
        self._log.warning("worker_gave_up", worker=worker.name, replaced=replaced)
        self._publish(WorkerGaveUp(self._name, worker.name, replaced))
        self._close(worker, message)

    def _remove(self, worker: _Worker, _message: Any) -> None:
        connection = worker.connection
        worker.route = worker.connection = None
        if connection is not None and connection.lost_requests is not None:
            # Whatever was still in flight when the pool closed it: the child has exited now.
            self._dispatcher.settle_lost(connection, order_known=False)
        self._workers.pop(worker.name, None)
        self._results[worker.name] = worker.result
        if worker.replacement is not None:
            worker.replacement.replacing = None
        self._publish_routes()
        self._finish_stop_if_done()

    def _ignore_event(self, worker: _Worker, _message: Any) -> None:
        self._log.debug("event_ignored", worker=worker.name, state=worker.state.value)

    def _ignore_stale(self, worker: _Worker, message: Any) -> None:
        self._log.info("stale_report", worker=worker.name,
                       generation=getattr(message, "generation", None))

    # --- helpers ----------------------------------------------------------------------------

    def _add_slot(self) -> _Slot:
        number = next(self._slot_numbers)
        slot = self._slots[number] = _Slot(number, RestartHistory(self._policy),
                                           self._next_placement())
        self._start_worker(slot)
        return slot

    def _next_placement(self) -> int:
        """The placement with the fewest slots (the first of those): slots spread evenly."""
        held = dict.fromkeys(range(len(self._placements)), 0)
        for slot in self._slots.values():
            held[slot.placement] += 1
        return min(held, key=lambda index: (held[index], index))

    def _spec_for(self, slot: _Slot) -> LaunchSpec:
        """How ``slot``'s worker is launched: with its own busy polling if its slot is among
        the first ``polling_workers`` the CPU rule lets poll (of the slots it reaches, by
        number: the pool's order, which its dispatch keeps small tasks on), else as its
        placement says. A slot keeps its number for life, so a restart or a replacement
        polls as the worker before it did, and slots added later come after."""
        polling = self._polling_placements
        if polling and polling[slot.placement] is not None:
            earlier = sum(1 for other in self._slots.values()
                          if other.number < slot.number and polling[other.placement] is not None)
            if earlier < self._polling_workers:
                spec = polling[slot.placement]
                assert spec is not None
                return spec
        return self._placements[slot.placement]

    def _start_worker(self, slot: _Slot, *, replacing: _Worker | None = None) -> _Worker:
        count = next(slot.names)
        name = f"{self._name}.w{slot.number}" + (f".{count}" if count > 1 else "")
        hooks: list[pykka.ActorRef[Any]] = []
        if self._on_startup is not None:
            hooks.append(subscriber_for(self._on_startup, (ProcessStarted,), name=name))
        if self._on_termination is not None:
            hooks.append(subscriber_for(self._on_termination, (ProcessTerminated,), name=name))
        spec = self._spec_for(slot)
        # Opened per worker, as a controller opens its own: one ssh connection master each.
        session = open_session(spec.launcher, name)
        end_of_life: ReplyFuture[EndOfLife] = ReplyFuture()
        try:
            actor_ref = ControllerActor.start(
                name, spec, ProcessActor.factory(name, launcher=session), self._policy,
                [*hooks, *self._worker_subscribers, self.actor_ref], end_of_life=end_of_life,
            )
        except BaseException:
            for hook in hooks:
                hook.stop(block=False)
            session.close()
            raise
        controller = ProcessController(actor_ref, name, spec, end_of_life, owned=True,
                                       restart=self._policy)
        worker = _Worker(name, slot.number, controller, hooks, session, replacing=replacing)
        self._workers[name] = worker
        self._figures["started"] += 1
        self._log.info("worker_starting", worker=name, slot=slot.number,
                       replacing=replacing.name if replacing is not None else None)
        self._ask_connection(worker, None)
        return worker

    def _publish_routes(self) -> None:
        routes = tuple(
            w.route for w in self._workers.values()
            if w.state is WorkerState.READY and w.route is not None
        )
        slots = tuple(sorted(self._slots))
        can_grow = not self._stopping and len(self._slots) < self._max_size
        # Slots with a worker on its way and none serving: starting, restarting, or to be
        # replaced after giving up. (A worker that leaves takes its slot out of _slots as it
        # goes, and slot numbers are never used again.)
        serving = {w.slot for w in self._workers.values() if w.state is WorkerState.READY}
        coming = 0 if self._stopping else sum(1 for number in self._slots if number not in serving)
        unserved: BaseException | None = None
        if not self._stopping and not self._slots and not can_grow:
            last = f" (the last: {self._last_failure})" if self._last_failure else ""
            unserved = ProcessUnavailable(
                f"pool {self._name!r} has no worker left: every one gave up and left{last}"
            )
        elif (not routes and self._start_error is not None
              and self._failed_slots.issuperset(self._slots)):
            unserved = self._start_error
        self._dispatcher.publish(routes, slots, can_grow=can_grow, coming=coming,
                                 unserved=unserved)

    def _publish(self, event: object) -> None:
        for subscriber in publish(self._subscribers, event):
            self._log.info("subscriber_gone", subscriber=str(subscriber))

    def _tick_interval(self) -> float:
        limits = [t for t in (self._options.max_idle, self._options.recycle_after_seconds) if t]
        return max(0.01, min(1.0, *(t / 4 for t in limits))) if limits else 1.0

    def _arm_tick(self) -> None:
        options = self._options
        if self._stopping or (options.max_idle is None and options.recycle_after_seconds is None):
            return
        me = self.actor_ref
        self._tick = call_later(self._tick_interval(), lambda: _tell(me, Tick()))

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def _finish_stop_if_done(self) -> None:
        if not self._stopping or self._workers:
            return
        results, waiters = dict(self._results), self._stop_waiters
        self._stop_waiters = []
        for waiter in waiters:
            waiter.try_set(results)
        self._log.info("pool_stopped", workers=len(results))
        self.stop()

    def stats(self) -> dict[str, Any]:
        """The pool's figures (on the actor's thread; others send ``GetPoolStats``)."""
        request_path = self._dispatcher.stats()
        routes = request_path.pop("routes")
        now = self._clock()
        workers = []
        for worker in self._workers.values():
            connection = worker.connection
            route = routes.get(worker.name, {})
            workers.append({
                "name": worker.name,
                "slot": worker.slot,
                "where": _where(worker.controller.spec),
                "state": worker.state.value,
                "pid": connection.pid if connection is not None else None,
                "generation": connection.generation if connection is not None else None,
                "one_at_a_time": None if connection is None or connection.peer_concurrency is None
                else connection.peer_concurrency == 1,
                "in_flight": route.get("in_flight", 0),
                "calls": route.get("calls", 0),
                "uptime": None if worker.ready_at is None else now - worker.ready_at,
            })
        return {
            "name": self._name,
            "state": "stopping" if self._stopping else "open",
            "size": sum(w.state is WorkerState.READY for w in self._workers.values()),
            "slots": len(self._slots),
            "min_size": self._options.min_size,
            "max_size": self._max_size,
            **request_path,
            **self._figures,
            "workers": workers,
        }

    # --- end of life ------------------------------------------------------------------------

    def on_stop(self) -> None:
        """Leave nothing behind: close every worker still open, settle every future."""
        self._end_of_life()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """As ``on_stop``: a crashed pool must not leave a future hanging or a child running."""
        self._log.error("pool_failed", exc_info=(exception_type, exception_value, traceback)
                        if exception_type is not None else None)
        self._end_of_life()

    def _end_of_life(self) -> None:
        if not self._ended:  # once: on_start's failure, then pykka's own stop
            self._ended = True
            self._close_everything()
        for waiter in self._stop_waiters:
            waiter.try_set(dict(self._results))
        self._stop_waiters = []

    def _close_everything(self) -> None:
        self._cancel_timers()
        self._dispatcher.close(ControllerClosed(f"pool {self._name!r} is closed"))
        for worker in list(self._workers.values()):
            connection = worker.connection
            if connection is not None and connection.lost_requests is not None:
                self._dispatcher.settle_lost(connection, order_known=False)
            if worker.state is not WorkerState.STOPPING:
                parts = (worker.controller, worker.hooks, worker.session)
                if not start_daemon(_close_worker, f"juicectl-pool-close-{worker.name}", *parts):
                    _close_worker(*parts)  # no thread to be had: here, one at a time


def _where(spec: LaunchSpec) -> str:
    """Where a worker runs, as its launcher names it (``"local"`` for this machine)."""
    where = getattr(spec.launcher, "where", None)
    return where if isinstance(where, str) else "local"


def _close_worker(
    controller: ProcessController, hooks: Sequence[pykka.ActorRef[Any]], session: LaunchSession
) -> StopResult | None:
    """On a helper thread: close a worker's controller (its child stopped through the whole
    escalation), then its hooks and its launcher's session (the ssh master)."""
    try:
        return controller.close()
    finally:
        for hook in hooks:
            with contextlib.suppress(Exception):
                hook.stop(block=False)
        session.close()


def _tell(ref: pykka.ActorRef[Any], message: object) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)


_Effect = Callable[[PoolActor, _Worker, Any], "tuple[_Worker, Event] | None"]

_ACTIONS: Final[Mapping[Action, _Effect]] = {
    Action.ASK_CONNECTION: PoolActor._ask_connection,
    Action.SERVE: PoolActor._serve,
    Action.NOTE_START_FAILED: PoolActor._note_start_failed,
    Action.SETTLE_LOSS: PoolActor._settle_loss,
    Action.SETTLE_AND_CLOSE: PoolActor._settle_and_close,
    Action.START_REPLACEMENT: PoolActor._start_replacement,
    Action.AWAIT_RECYCLE: PoolActor._await_recycle,
    Action.RETIRE: PoolActor._retire,
    Action.SHRINK: PoolActor._shrink,
    Action.CLOSE: PoolActor._close,
    Action.DEPART: PoolActor._depart,
    Action.REMOVE: PoolActor._remove,
    Action.IGNORE: PoolActor._ignore_event,
    Action.IGNORE_STALE: PoolActor._ignore_stale,
}
"""The method that runs each action; it may return a follow-up (worker, event)."""

_GUARDS: Final[Mapping[Guard, Callable[[PoolActor, _Worker, Any], bool]]] = {
    Guard.STALE: PoolActor._is_stale,
    Guard.CLOSING: PoolActor._is_closing,
    Guard.NO_RESTART: PoolActor._will_not_restart,
    Guard.REPLACEMENT_COMING: PoolActor._replacement_coming,
    Guard.RECYCLING: PoolActor._recycling,
}

_HANDLERS: Final[Mapping[type, Callable[[PoolActor, Any], None]]] = {
    WorkerReady: PoolActor._handle_ready,
    WorkerStartFailed: PoolActor._handle_start_failed,
    ProcessStarted: PoolActor._handle_started,
    ProcessTerminated: PoolActor._handle_terminated,
    GaveUp: PoolActor._handle_gave_up,
    RecycleWanted: PoolActor._handle_recycle,
    RouteDrained: PoolActor._handle_drained,
    WorkerClosed: PoolActor._handle_closed,
    GrowWanted: PoolActor._handle_grow,
    Tick: PoolActor._handle_tick,
    ReplaceDue: PoolActor._handle_replace_due,
    StopPool: PoolActor._handle_stop,
    _HurryStop: PoolActor._handle_hurry,
    GetPoolStats: PoolActor._handle_stats,
    ModeChanged: PoolActor._ignore,
}
"""Each message the actor takes, and the method that turns it into events."""
