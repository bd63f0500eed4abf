"""A pool's request path: callers pick a worker and write to it on their own thread.

Theory of operation
-------------------
The pool actor decides which workers serve; it does not carry requests. It publishes a
*routing snapshot* (``Dispatcher.publish``): a tuple of ``Route``s, one per worker that takes
requests, each with the worker's ``Connection``. A caller's ``call()`` reads the snapshot,
picks a route under the dispatch lock (least loaded, round robin, or the key's worker),
counts the request on it, lets go of the lock and writes on the connection itself, as a
caller of one controller does: no actor hop per request (``docs/performance.md``: a hop
halves throughput).
One future per request: the ``PoolFuture`` is the connection's own (a ``RequestFuture``,
handed to ``call_with``), settled by the connection that answers it, and ``get()`` reads its
own answer as a caller of one controller does.

Nothing on the pool's side runs per request once it is written. A worker's load is its
connection's count of requests awaiting an answer (``Connection.in_flight``) plus the picks on
their way there (``Route.writing``). The connection calls its route's ``request_done`` after
each answer, which costs an attribute check unless there is work: a request the pool held
back to write, or a retiring worker with nothing left in flight to report (``RouteDrained``).
A call that finds every worker busy asks for one more (``GrowWanted``, once until the next
snapshot); the call that reaches ``recycle_after_calls`` on a worker says so
(``RecycleWanted``).

Least loaded, in the steady state (``_pick_least_loaded``): while the workers *keep up*, the
first route in the pool's order takes the request, idle or not, up to its cap, unless it
*stalls*; else an idle route (the next in turn); else the least loaded. The workers keep up
when, over the last ``_KEEPS_UP_READS`` reads of a busy one's output (``Connection.reads``),
the reads brought at least ``_KEEPS_UP_ANSWERS`` answers each: the answers wait for this side,
which is the slower, and a second child would only cost it a process to wake per request.
Measured when a pick looks at a busy route, from two counters the reading thread keeps
anyway: nothing per request. The first route stalls when no read of its output has come for
``_STALL_SECONDS`` while it takes requests; the picks keep that clock (one
``time.monotonic()`` a pick, nothing per read), and a read counts as fresh only when a pick
sees it within ``_STALL_SECONDS`` of the pick before. A stalled route may be busy with
something long: an idle route takes the next request, else any other with room.

The pool holds a request back (its *queue*, at most ``max_queued``) when no worker can take
it: none is ready, each has ``max_per_worker`` in flight, or the key's worker is busy or
restarting. While some slot's worker is on its way (the snapshot's ``coming``: starting,
restarting, to be replaced), a request without a key also waits once every worker serving has
its even share of the pool's requests (``_share``: in flight and held, over the workers serving
and coming), and behind any held already: a batch sent before the last worker is ready is
split, not taken whole by the first one ready. A held request is written by whoever frees
room first: the thread that settles an answer on a worker, or the actor as it publishes a
snapshot with a new worker. A caller that holds a request looks for room once more after
queueing it: an answer settled between its pick and its queueing found the queue empty.

After a loss
------------
When a worker's connection ends, it tells each outstanding request so
(``RequestFuture.lost``); a ``PoolFuture`` keeps the connection's error and stays open, and
the route stops taking requests once the actor retires it (or a write finds it closed).
The pool actor decides what becomes of each once the child is known to be gone, from the
connection's ``lost_requests`` (in write order, each written or not) and what the child said
of itself (``peer_concurrency``): ``settle_lost`` re-sends what the child cannot have started
and fails the rest with the connection's error. Each ``PoolFuture`` is re-sent at most once
per loss, and only while it still names the lost connection as its last: never twice. A
caller may be blocked on a re-sent future without reading; the new connection's reader thread
is asked to read for it (``ReadRole.watch``), as for a future with callbacks.

Locking
-------
One lock, the *dispatch lock*, guards the routes' counts and flags, the queue and the
figures. It is held to pick and count, to queue, or to uncount: never while writing, waiting
or running a callback. ``Route.writing`` is a deque so that a writer takes its pick off it
without the lock (``deque.pop`` is atomic); pickers read it, and the connection's count,
under the lock, which makes the count a bound, never lower than the truth. ``get()`` on a
request the pool holds, or one whose fate a loss left open, waits on a condition of that
lock; the actor and the writing threads notify it only on those rare paths.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pykka

from juicectl._future import ReplyFuture, check_wait
from juicectl._main_thread import one_slice
from juicectl._reading import RequestFuture
from juicectl._timer import TimerHandle, call_later
from juicectl.connection import Connection
from juicectl.exceptions import (
    ArgumentError,
    ControllerClosed,
    ProcessUnavailable,
    RequestTimeout,
    RequestWithdrawn,
    TooManyRequests,
)
from juicectl.juice import Command
from juicectl.policy import check_timeout

__all__ = [
    "Dispatcher",
    "GrowWanted",
    "PoolFuture",
    "RecycleWanted",
    "Route",
    "RouteDrained",
]

# The workers "keep up" (``Dispatcher._pick_least_loaded``) when, over the last
# ``_KEEPS_UP_READS`` reads of a busy one, the reads brought at least ``_KEEPS_UP_ANSWERS``
# answers each.
_KEEPS_UP_READS = 32
_KEEPS_UP_ANSWERS = 2
# The first worker goes before an idle one while a read of its output has come within this
# many seconds (as the picks see it): longer than a scheduling hiccup (the interpreter's
# switch interval is 5 ms), short next to a request a worker should not idle beside.
_STALL_SECONDS = 0.01

_reply_future_init = ReplyFuture.__init__
_reply_get = ReplyFuture.get
_request_get = RequestFuture.get


# --- notices the request path sends the pool actor --------------------------------------------


@dataclass(frozen=True)
class GrowWanted:
    """Every worker that takes requests is busy (or none is ready): one more would help."""


@dataclass(frozen=True)
class RecycleWanted:
    """A worker has served ``recycle_after_calls`` requests."""

    worker: str
    """The worker's name."""


@dataclass(frozen=True)
class RouteDrained:
    """A retiring worker has no request in flight any more."""

    worker: str
    """The worker's name."""


# --- routes and futures -----------------------------------------------------------------------


class Route:
    """One worker as callers see it: its connection, and its counts under the dispatch lock.

    Made by the pool actor when a worker is ready, which makes it its connection's
    ``when_request_done``; the flags ``accepting`` and ``retiring`` are set by the actor (and
    ``accepting`` cleared by a writer that found the connection ended), always under the
    dispatch lock.
    """

    __slots__ = (
        "accepting",
        "calls",
        "cap",
        "connection",
        "dispatcher",
        "drained",
        "picked_at",
        "read_seen",
        "read_seen_at",
        "recycle_asked",
        "retiring",
        "seen_answered",
        "seen_reads",
        "slot",
        "worker",
        "writing",
    )

    def __init__(self, slot: int, worker: str, connection: Connection, dispatcher: Dispatcher):
        self.slot = slot
        """The worker's place in the pool (its replacement takes the same)."""
        self.worker = worker
        """The worker's name (its controller's)."""
        self.connection = connection
        self.dispatcher = dispatcher
        #: The most requests in flight here: the pool's cap, or the connection's if lower.
        self.cap = min(dispatcher.max_per_worker, connection.max_in_flight)
        self.calls = 0
        self.accepting = True
        self.retiring = False
        self.drained = False  # RouteDrained told, or retire() found it empty
        self.recycle_asked = False
        #: One entry per request picked for this route and not yet in its connection's table.
        self.writing: deque[None] = deque()
        #: Its connection's reads and answers when its last window of reads was measured
        #: (``Dispatcher._pick_least_loaded``).
        self.seen_reads = connection.reads
        self.seen_answered = connection.answered
        #: As the first route (``Dispatcher._pick_least_loaded``): its connection's reads as
        #: the last pick saw them, when a read is last known to have come (a pick saw a new
        #: count soon after the pick before, or it took a request while idle), and when it
        #: was last picked (``time.monotonic()``): how long it has taken requests without a
        #: read of its output.
        self.read_seen = connection.reads
        self.read_seen_at = self.picked_at = time.monotonic()
        connection.when_request_done = self.request_done

    @property
    def in_flight(self) -> int:
        """Requests on this worker: awaiting an answer on its connection, or picked and on
        their way there."""
        return self.connection.in_flight + len(self.writing)

    def request_done(self) -> None:
        """The connection settled a request (on its reading thread): write what the pool holds
        if any, report a retiring route once it is empty; nothing else."""
        dispatcher = self.dispatcher
        if self.retiring:
            dispatcher.check_drained(self)
        if dispatcher._queue:  # read without the lock: drain() looks again under it
            dispatcher.drain()

    def __repr__(self) -> str:
        return (
            f"<Route {self.worker} slot={self.slot} in_flight={self.in_flight} "
            f"calls={self.calls} accepting={self.accepting}>"
        )


class PoolFuture(RequestFuture):
    """The future of a request sent through a ``ProcessPool``: a ``ReplyFuture`` of the
    response fields.

    It fails as a connection's request does (the declared exception, ``RemoteJuiceError``,
    ``RequestTimeout``, ``ArgumentError`` for arguments only the worker's codec rejects), and
    with ``ProcessUnavailable`` only if the worker died with the request started (see
    ``docs/pools.md``): a request the worker cannot have started is sent again elsewhere.
    Once written it is the connection's own future of the request (``RequestFuture``): the
    connection that answers settles it.

    Attributes:
        command: the command sent.
        key: the sticky key it was sent with, or None.
        resends: how many times it was sent again after a worker died.
    """

    # The state of a future not yet written, as class-level defaults (see ReplyFuture).
    _connection: Connection | None = None  # where it was last written; None while held
    _loss: BaseException | None = None  # that connection ended with it open: the pool decides
    _relay = False  # someone wants callbacks: its connection's reader must read for it
    _expiry: TimerHandle | None = None  # the request timeout while the pool holds it
    _slot: int | None = None  # the key's slot while held, as of _slots_seen
    _slots_seen: tuple[int, ...] | None = None
    _timeout: float | None = None
    _deadline: float | None = None
    _may_block = True  # False: its writes hand a full pipe to a helper thread (asyncio)
    key: Any = None
    resends = 0

    def __init__(
        self,
        dispatcher: Dispatcher,
        command: type[Command],
        arguments: Mapping[str, Any],
        key: Any,
        timeout: float | None,
        deadline: float | None,
    ) -> None:
        _reply_future_init(self)
        self._dispatcher = dispatcher
        self.command = command
        self.arguments = arguments
        # Stored only when given: the class defaults say None for the common call.
        if key is not None:
            self.key = key
        if timeout is not None:
            self._timeout = self.stated_timeout = timeout
            self._deadline = deadline

    @property
    def worker_future(self) -> RequestFuture | None:
        """The connection's future of the request as last written: this future itself (None
        while the pool holds it)."""
        return self if self._connection is not None else None

    def get(self, *, timeout: float | None = None) -> Any:
        """The response fields (or raise); wait up to ``timeout`` seconds (None: forever).

        Raises:
            pykka.Timeout: no outcome within ``timeout``.
        """
        if self._loss is None and self.reading is not None:
            return _request_get(self, timeout=timeout)  # the caller reads its own answer
        if self._settled or self._hooked:
            return _reply_get(self, timeout=timeout)
        if timeout is not None:
            check_wait(timeout)
        try:
            return self._dispatcher.wait(self, timeout)
        except pykka.Timeout:
            raise pykka.Timeout(f"{timeout} seconds") from None  # the caller's, not what was left

    def add_done_callback(self, callback: Callable[[ReplyFuture[dict[str, Any]]], None]) -> None:
        """Call ``callback(future)`` once the outcome is known (at once if it is)."""
        self._relay = True
        RequestFuture.add_done_callback(self, callback)

    def withdraw(self) -> bool:
        """Take the request back if the pool still holds it (no worker has taken it): it is
        never sent, and fails with ``RequestWithdrawn``. True if it was taken back; False
        once it has been written (the Juice protocol cannot take a request back) or settled.
        An ``asyncio`` call that is cancelled does this (``juicectl.aio``)."""
        return self._dispatcher.withdraw(self)

    def lost(self, reason: BaseException) -> None:
        """Its connection ended with it outstanding: keep ``reason`` and wait for the pool's
        decision (``Dispatcher.settle_lost``), unless the pool is closed and none will come."""
        self._loss = reason
        if self._dispatcher.closed:
            self.try_set_exception(reason)

    def _unwritten(self) -> None:
        """Written on no connection (held, refused, or about to be sent again): no reader
        reads for it until a connection takes it."""
        self._connection = None
        self.reading = None

    def _remaining(self) -> float | None:
        deadline = self._deadline
        if deadline is None:
            return None
        return deadline - time.monotonic()

    def __repr__(self) -> str:
        state = "done" if self._settled else "held" if self._connection is None else "written"
        return f"<PoolFuture {self.command.command_name} {state} resends={self.resends}>"


# --- the dispatcher ---------------------------------------------------------------------------


class Dispatcher:
    """The routing snapshot, the queue and the dispatch lock of one pool (see the module
    docstring). Callers use ``submit``; the pool actor ``publish``es, ``settle_lost``s and
    ``close``s.

    Args:
        name: the pool's name (for errors).
        max_per_worker, max_queued, least_loaded, recycle_after_calls: from ``PoolOptions``.
        default_timeout: the request timeout when a call gives none (the connections').
        tell: sends a notice to the pool actor (from any thread).
    """

    def __init__(
        self,
        name: str,
        *,
        max_per_worker: int,
        max_queued: int,
        least_loaded: bool,
        recycle_after_calls: int | None,
        default_timeout: float | None,
        tell: Callable[[object], None],
    ) -> None:
        self.name = name
        self.max_per_worker = max_per_worker
        self._max_queued = max_queued
        self._least_loaded = least_loaded
        self._recycle_after = recycle_after_calls or 0
        self._default_timeout = default_timeout
        self._tell = tell
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._routes: tuple[Route, ...] = ()
        self._first: Route | None = None  # the route of the lowest slot
        self._slots: tuple[int, ...] = ()
        self._can_grow = False
        self._grow_asked = False
        self._coming = 0  # slots whose worker is on its way (starting, restarting)
        self._queue: deque[PoolFuture] = deque()
        self._closed: BaseException | None = None
        self._unserved: BaseException | None = None  # set while no worker can ever come
        self._turn = 0
        self._keeps_up = False  # see _pick_least_loaded (under the lock)
        # Figures (under the lock).
        self.written = 0
        self.held = 0
        self.resent = 0
        self.failed_at_loss = 0

    # --- the callers' side ------------------------------------------------------------------

    def submit(
        self,
        command: type[Command],
        arguments: Mapping[str, Any],
        key: Any,
        timeout: float | None,
        *,
        may_block: bool = True,
    ) -> PoolFuture:
        """Send one request through the pool (see ``ProcessPool.call``)."""
        if not (isinstance(command, type) and issubclass(command, Command)):
            raise ArgumentError(f"call() needs a Command subclass, not {command!r}")
        deadline = None
        if timeout is None:
            timeout = self._default_timeout
        else:
            try:
                timeout = check_timeout(timeout, "timeout")
            except (TypeError, ValueError) as error:
                raise ArgumentError(f"{command.command_name} not sent: {error}") from None
        if timeout is not None:
            deadline = time.monotonic() + timeout
        future = PoolFuture(self, command, arguments, key, timeout, deadline)
        if not may_block:
            future._may_block = False
        if key is None:
            # The common case, without ``_place``'s loop and notices: a route with room and
            # nothing to tell the actor. Anything else (closed, none free, a notice due, a
            # connection ended at the door) goes the whole way below.
            with self._lock:
                route = self._pick(None) if self._closed is None else None
                if route is not None:
                    calls = route.calls + 1
                    if calls == self._recycle_after or (
                        self._can_grow and not self._grow_asked and route.in_flight
                    ):
                        route = None  # a notice to send: the whole path below
                    else:
                        route.calls = calls
                        route.writing.append(None)
                        self.written += 1
            if route is not None and self._write(future, route, first=True):
                return future
        self._place(future, first=True)
        return future

    def _place(self, future: PoolFuture, *, first: bool) -> None:
        """Write ``future`` on the best route, or hold it; ``first``: for its caller, who gets
        bad arguments and a full queue as exceptions (later, they fail the future)."""
        while True:
            grow = recycle = held = False
            with self._lock:
                closed = self._closed
                route = None if closed is not None else self._pick(future.key)
                if route is not None:
                    in_flight = route.in_flight
                    route.writing.append(None)
                    calls = route.calls = route.calls + 1
                    self.written += 1
                    if in_flight and self._can_grow and not self._grow_asked:
                        grow = self._grow_asked = True
                    if calls == self._recycle_after and not route.recycle_asked:
                        recycle = route.recycle_asked = True
                elif closed is None and self._unserved is not None:
                    closed = self._unserved
                elif closed is None:
                    self._hold(future, first=first)
                    held = True
                    if self._can_grow and not self._grow_asked:
                        grow = self._grow_asked = True
            if closed is not None:
                error = (
                    _copy_error(closed) if closed is self._unserved
                    # Permanent, as a closed controller's: not a ProcessUnavailable, which
                    # callers retry.
                    else ControllerClosed(f"pool {self.name!r} is closed; request not sent")
                )
                if first:
                    raise error
                future.try_set_exception(error)
                return
            if grow:
                self._tell(GrowWanted())
            if held:
                self.drain()  # room freed between the pick and the queueing is not missed
                return
            assert route is not None
            if recycle:
                self._tell(RecycleWanted(route.worker))
            if self._write(future, route, first=first):
                return
            # That worker's connection had ended already: nothing was written; go elsewhere.

    def _pick(self, key: Any, *, queued: bool = False) -> Route | None:
        # Called with the lock held; ``queued``: the request is in the queue already.
        routes = self._routes
        if key is not None:
            slot = _slot_for(key, self._slots)
            for route in routes:
                if route.slot == slot and route.accepting and route.in_flight < route.cap:
                    return route
            return None
        share = None
        if self._coming:
            if self._queue and not queued:
                return None  # behind those held: they go first, in the order they came
            share = self._share(queued)
        count = len(routes)
        if count == 1:
            route = routes[0]
            # Route.in_flight, inlined: this is every call's pick with one worker.
            load = route.connection.in_flight + len(route.writing)
            cap = route.cap if share is None else min(route.cap, share)
            return route if route.accepting and load < cap else None
        if share is None and self._least_loaded:
            return self._pick_least_loaded(routes)
        start = self._turn = (self._turn + 1) % count if count else 0
        best = None
        best_load = 0
        for index in range(start, start + count):
            route = routes[index % count]
            if not route.accepting:
                continue
            load = route.in_flight
            if load >= route.cap or (best is not None and load >= best_load):
                continue
            if share is not None and load >= share:
                continue
            if not self._least_loaded or not load:
                return route
            best, best_load = route, load
        return best

    def _pick_least_loaded(self, routes: tuple[Route, ...]) -> Route | None:
        # Called with the lock held, every worker serving. While the workers keep up (the
        # last window measured on a busy one: its answers waited to be read, several a read),
        # this side, not the children, is the slower: the first worker in the pool's order
        # takes it while it has room, idle or not, so that the load stays on one, the one
        # that polls (``spin_plan``). A second child would only add a process to wake per
        # request, on CPUs the parent needs, and its answer, later than the others, would
        # hold up whatever waits for them in order. Unless that first worker stalls: once no
        # answer has been read from it for _STALL_SECONDS while it takes requests, whatever
        # it is busy with may be long, and another worker with room, idle first, takes the
        # next. Otherwise an idle worker (the next in turn, when several are): nothing waits
        # behind another request while a worker has nothing to do; else the least loaded:
        # children that are the slower (an answer a read: each read waited for it) share
        # the load evenly.
        stalled = None
        first = self._first
        if self._keeps_up and first is not None and first.accepting:
            connection = first.connection
            load = connection.in_flight + len(first.writing)
            if load < first.cap:
                now = time.monotonic()
                if not load:  # the stall clock starts as it takes a request
                    first.read_seen = connection.reads
                    first.read_seen_at = first.picked_at = now
                    return first
                self._measure(first, connection)
                if self._keeps_up:
                    reads = connection.reads
                    if reads != first.read_seen:
                        first.read_seen = reads
                        # A read since the pick before, so at most this long ago: fresh
                        # only if that pick was recent. After a quiet spell it may be old.
                        if now - first.picked_at < _STALL_SECONDS:
                            first.read_seen_at = now
                    first.picked_at = now
                    if now - first.read_seen_at < _STALL_SECONDS:
                        return first
                    stalled = first  # the next goes to another worker with room, if any
        count = len(routes)
        if not count:
            return None  # no worker serves yet
        start = self._turn = (self._turn + 1) % count
        best = lowest = None
        best_load = 0
        for index in range(start, start + count):
            route = routes[index % count]
            if not route.accepting or route is stalled:
                continue
            connection = route.connection
            load = connection.in_flight + len(route.writing)
            if load >= route.cap:
                continue
            if not load:
                return route
            if stalled is None:
                self._measure(route, connection)
            if best is None or load < best_load:
                best, best_load = route, load
            if lowest is None or route.slot < lowest.slot:
                lowest = route
        if stalled is not None:
            # Any other worker with room goes first: the stalled one holds a request that
            # may be long, and what it takes waits behind it.
            return best if best is not None else stalled
        if self._keeps_up and lowest is not None:
            # A window measured just now found them keeping up: the first takes it, and its
            # stall clock starts now.
            lowest.read_seen = lowest.connection.reads
            lowest.read_seen_at = lowest.picked_at = time.monotonic()
            return lowest
        return best

    def _measure(self, route: Route, connection: Connection) -> None:
        # Called with the lock held, for a busy route: once it has read _KEEPS_UP_READS times
        # since its last window, whether that window's reads brought several answers each.
        reads = connection.reads - route.seen_reads
        if reads >= _KEEPS_UP_READS:
            answered = connection.answered
            self._keeps_up = answered - route.seen_answered >= _KEEPS_UP_ANSWERS * reads
            route.seen_reads += reads
            route.seen_answered = answered

    def _share(self, queued: bool) -> int:
        # Called with the lock held, while a slot's worker is on its way (``_coming``): the
        # most requests one worker that serves may have, its even share of all the pool has
        # (in flight, held, and this one unless ``queued``) among the workers that serve and
        # those to come. Without it the first worker ready takes a whole batch, up to its cap,
        # and the next one finds nothing left to do.
        total = len(self._queue) + (0 if queued else 1)
        for route in self._routes:
            total += route.in_flight
        return -(-total // (len(self._routes) + self._coming))

    def _hold(self, future: PoolFuture, *, first: bool, front: bool = False) -> None:
        # Called with the lock held: keep ``future`` until a worker can take it.
        if first:
            # Checked here, as the connection checks them at the write: bad arguments fail
            # their caller at once, not when a worker takes them.
            future.command.make_arguments(future.arguments)
        if first and len(self._queue) >= self._max_queued:
            raise TooManyRequests(
                f"pool {self.name!r} holds {len(self._queue)} requests already (max_queued) "
                f"and no worker can take another; {future.command.command_name} not sent"
            )
        if front:
            self._queue.appendleft(future)
        else:
            self._queue.append(future)
        self.held += 1
        future._unwritten()
        remaining = future._remaining()
        if remaining is not None and future._expiry is None:
            future._expiry = call_later(max(remaining, 0.0), lambda: self._expire(future))

    def _write(self, future: PoolFuture, route: Route, *, first: bool) -> bool:
        """Write ``future`` on ``route`` (already counted there); False if the route's
        connection had ended before the write (nothing sent: the caller tries elsewhere)."""
        if future.resends or not first:
            timeout = future._remaining()
            if timeout is not None and timeout <= 0:
                self._uncount(route)
                future.try_set_exception(RequestTimeout(
                    f"{future.command.command_name} got no answer within {future._timeout}s"
                ))
                return True
        else:
            timeout = future._timeout
        connection = route.connection
        # Named before the write: a loss decided while this thread is still in call_with()
        # must find the future as this connection's.
        future._connection = connection
        try:
            connection.call_with(
                future.command, future.arguments, timeout=timeout, wait_for_slot=False,
                future=future, may_block=future._may_block,
            )
        except TooManyRequests:
            # The connection's own bound (its max_in_flight, or a child not reading its
            # input): the pool holds the request instead.
            self._uncount(route)
            # Rare: a route's cap is its connection's bound too (``Route.cap``), so this is
            # a child that stopped reading; its next answer, or the next snapshot, drains.
            with self._lock:
                self._hold(future, first=first)
            return True
        except ProcessUnavailable:
            # Refused at the door: the connection had ended. Nothing was sent.
            future._unwritten()
            self._uncount(route, ended=True)
            return False
        except BaseException as error:
            future._unwritten()
            self._uncount(route)
            if first:
                raise
            future.try_set_exception(error)
            return True
        route.writing.pop()
        if route.retiring:
            self.check_drained(route)
        if future._relay or future.resends:
            # Someone may wait on it without reading this connection (callbacks, or a caller
            # blocked since an earlier write): its reader thread reads for them.
            reading = future.reading
            if reading is not None:
                reading.watch(future)
        return True

    def _uncount(self, route: Route, *, ended: bool = False) -> None:
        route.writing.pop()
        with self._lock:
            route.calls -= 1
            self.written -= 1
            if ended:
                route.accepting = False  # its connection has ended: pick it no more
        if route.retiring:
            self.check_drained(route)

    def check_drained(self, route: Route) -> None:
        """Tell the actor once a retiring ``route`` has nothing in flight (any thread)."""
        with self._lock:
            if route.drained or route.in_flight:
                return
            route.drained = True
        self._tell(RouteDrained(route.worker))

    def drain(self) -> None:
        """Write held requests while some worker can take one, in the order they came."""
        while True:
            with self._lock:
                if self._closed is not None or not self._queue:
                    return
                found: PoolFuture | None = None
                route: Route | None = None
                room = {r.slot: r for r in self._routes if r.accepting and r.in_flight < r.cap}
                if room:
                    looked = False  # for a worker to take a request without a key
                    anyone: Route | None = None
                    for future in self._queue:
                        if future.key is None:
                            if not looked:
                                anyone, looked = self._pick(None, queued=True), True
                            if anyone is None:
                                continue  # every worker has its share: a keyed one may go
                            found, route = future, anyone
                            break
                        if future._slots_seen is not self._slots:
                            future._slot = _slot_for(future.key, self._slots)
                            future._slots_seen = self._slots
                        if future._slot in room:
                            found, route = future, room[future._slot]
                            break
                if found is None or route is None:
                    return
                self._queue.remove(found)
                route.writing.append(None)
                route.calls += 1
                self.written += 1
                recycle = route.calls == self._recycle_after and not route.recycle_asked
                if recycle:
                    route.recycle_asked = True
            if found._expiry is not None:
                found._expiry.cancel()
                found._expiry = None
            if recycle:
                self._tell(RecycleWanted(route.worker))
            if found.done():
                self._uncount(route)
            elif not self._write(found, route, first=False):
                self._place(found, first=False)
            with self._changed:
                self._changed.notify_all()  # its caller may be waiting: it reads now

    def withdraw(self, future: PoolFuture) -> bool:
        """``future.withdraw()``: out of the queue, if it is there, and failed."""
        with self._lock:
            try:
                self._queue.remove(future)
            except ValueError:
                return False  # written (or settled) already
            expiry, future._expiry = future._expiry, None
        if expiry is not None:
            expiry.cancel()
        future.try_set_exception(RequestWithdrawn(
            f"{future.command.command_name} was taken back before any worker took it"
        ))
        with self._changed:
            self._changed.notify_all()
        return True

    def _expire(self, future: PoolFuture) -> None:
        with self._lock:
            try:
                self._queue.remove(future)
            except ValueError:
                return  # written meanwhile: the connection times it
            future._expiry = None
        future.try_set_exception(RequestTimeout(
            f"{future.command.command_name} got no answer within {future._timeout}s "
            "(no worker could take it)"
        ))
        with self._changed:
            self._changed.notify_all()

    def wait(self, future: PoolFuture, timeout: float | None) -> Any:
        """``future.get()`` while the pool holds it, or its fate after a loss is open: wait
        until it is written or settled, then as a connection's future."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not future._settled and (future._loss is not None or future.reading is None):
                if self._closed is not None and future._loss is not None:
                    # The pool is closed: no decision will send it again.
                    future.try_set_exception(future._loss)
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise pykka.Timeout(f"{timeout} seconds")
                self._changed.wait(one_slice(remaining))  # Ctrl-C raises on the main thread
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return future.get(timeout=remaining)

    # --- the pool actor's side --------------------------------------------------------------

    def publish(
        self,
        routes: tuple[Route, ...],
        slots: tuple[int, ...],
        *,
        can_grow: bool,
        coming: int = 0,
        unserved: BaseException | None = None,
    ) -> None:
        """A new snapshot: the routes callers may pick, the slots keys map to, whether the
        pool may grow, and how many slots have a worker on its way but none serving yet (while
        there are some, a worker that serves takes at most its even share: ``_share``);
        ``unserved``: why no worker can ever come (requests then fail). Then write what it
        holds, if a new worker can take it."""
        with self._lock:
            self._routes = routes
            self._first = min(routes, key=_slot_of, default=None)
            self._slots = slots
            self._can_grow = can_grow
            self._coming = coming
            self._grow_asked = False
            self._unserved = unserved
            held = bool(self._queue)
        if unserved is not None:
            self.fail_held(_copy_error(unserved))
        elif held:
            self.drain()

    def retire(self, route: Route) -> bool:
        """Stop picking ``route``; True if nothing is in flight on it (else a ``RouteDrained``
        comes once its last request is settled)."""
        with self._lock:
            route.accepting = False
            route.retiring = True
            empty = not route.in_flight
            if empty:
                route.drained = True  # the actor moves on now: no RouteDrained to come
            return empty

    def settle_lost(self, connection: Connection, *, order_known: bool) -> tuple[int, int]:
        """A worker's connection ended and its child is gone: send again each of its requests
        that the child cannot have started, fail the others. Returns (re-sent, failed).

        Never written: it never reached the child, so it goes again. Written, to a child that
        runs one request at a time and answers each before it starts the next
        (``peer_concurrency == 1``), when ``order_known`` (the connection ended after the
        child had exited and its output was read to the end): only the oldest of them can have
        started; the others go again. Any other written request fails with the connection's
        ``ProcessUnavailable``.
        """
        lost = connection.lost_requests or ()
        one_at_a_time = order_known and connection.peer_concurrency == 1
        again: list[PoolFuture] = []
        failed: list[tuple[PoolFuture, BaseException]] = []
        oldest_seen = False
        for entry in lost:
            future = entry.future
            if (isinstance(future, PoolFuture) and future._connection is connection
                    and not future._settled):
                if not entry.written or (one_at_a_time and oldest_seen):
                    again.append(future)
                else:
                    error = future._loss or ProcessUnavailable(
                        f"worker of pool {self.name!r} lost"
                    )
                    failed.append((future, error))
            if entry.written:
                oldest_seen = True
        with self._lock:
            self.resent += len(again)
            self.failed_at_loss += len(failed)
            for future in again:
                # As a future never written: the new connection gives it its own.
                future.resends += 1
                future._unwritten()
                future._loss = None
                future.seq = None
                future.timed = False
                future.watched = False
        for future, error in failed:
            future.try_set_exception(error)
        for future in again:
            self._place(future, first=False)
        with self._changed:
            self._changed.notify_all()
        return len(again), len(failed)

    def fail_held(self, error: BaseException) -> None:
        """Fail every request the pool holds with ``error`` (no worker will take them)."""
        with self._lock:
            held = list(self._queue)
            self._queue.clear()
        for future in held:
            if future._expiry is not None:
                future._expiry.cancel()
            future.try_set_exception(_copy_error(error))
        with self._changed:
            self._changed.notify_all()

    def close(self, error: BaseException) -> None:
        """No more requests: ``call()`` fails, held requests fail with ``error``."""
        with self._lock:
            if self._closed is not None:
                return
            self._closed = error
            self._routes = ()
        self.fail_held(error)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed is not None

    def stats(self) -> dict[str, Any]:
        """Figures: held now, and in all written, held, re-sent, failed at a loss; per route
        in flight and calls."""
        with self._lock:
            return {
                "queued": len(self._queue),
                "written": self.written,
                "held": self.held,
                "resent": self.resent,
                "failed_at_loss": self.failed_at_loss,
                "routes": {
                    route.worker: {"in_flight": route.in_flight, "calls": route.calls,
                                   "accepting": route.accepting}
                    for route in self._routes
                },
            }


def _copy_error(error: BaseException) -> BaseException:
    """A fresh instance of ``error`` for one more caller (a raised exception's traceback is
    changed by every thread that raises it); the same one if it cannot be copied."""
    import copy

    try:
        return copy.copy(error).with_traceback(None)
    except Exception:
        return error


def _slot_of(route: Route) -> int:
    return route.slot


def _slot_for(key: Any, slots: tuple[int, ...]) -> int | None:
    """The slot ``key`` belongs to: the highest of ``hash((key, slot))`` (rendezvous hashing:
    a slot that comes or goes moves only the keys that were or will be its own)."""
    best: int | None = None
    best_score = 0
    for slot in slots:
        score = hash((key, slot))
        if best is None or score > best_score:
            best, best_score = slot, score
    return best
