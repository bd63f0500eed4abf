"""One shared timer thread for the whole library.

Request timeouts, stop escalation steps and restart backoffs all need "call this later".
``threading.Timer`` would cost a thread per pending timeout (one per request in flight);
instead a single daemon thread keeps a heap of deadlines. Callbacks run on that thread and
must be quick: they settle a future or ``tell()`` an actor, nothing more.

A connection's request timeouts go one step further (``Deadlines``): thousands of requests a
second, nearly all answered long before their deadline, would each cost a timer armed and
cancelled (a handle, a closure, the scheduler's lock twice). Instead the connection keeps its
requests' deadlines in a heap of its own behind one timer, armed for the earliest of them;
an answer costs nothing there but a comparison.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from juicectl._log import get_logger

log = get_logger(__name__)

K = TypeVar("K")
D = TypeVar("D")


class Keys(Protocol):
    """What ``Deadlines`` asks of the keys still waiting: membership and a count."""

    def __contains__(self, key: object, /) -> bool: ...

    def __len__(self) -> int: ...


class TimerHandle:
    """A scheduled callback; ``cancel()`` keeps it from running (if it has not yet)."""

    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run the callback. Safe from any thread, any number of times."""
        self.cancelled = True


class _Scheduler:
    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(time.monotonic() + max(0.0, delay), callback)
        with self._condition:
            heapq.heappush(self._heap, (handle.deadline, next(self._counter), handle))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="juicectl-timer", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is handle:
                self._condition.notify()
        return handle

    def _loop(self) -> None:
        while True:
            with self._condition:
                while True:
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._condition.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        handle = heapq.heappop(self._heap)[2]
                        break
                    # A deadline beyond what a lock can wait (a timeout of years) would
                    # raise OverflowError here and end the shared thread.
                    self._condition.wait(min(wait, threading.TIMEOUT_MAX))
            if handle.cancelled:
                continue
            try:
                handle.callback()
            except Exception:  # a timer callback must never kill the shared thread
                log.exception("timer_callback_failed", callback=repr(handle.callback))


_scheduler = _Scheduler()


def call_later(delay: float, callback: Callable[[], None]) -> TimerHandle:
    """Run ``callback()`` on the shared timer thread after ``delay`` seconds."""
    return _scheduler.call_later(delay, callback)


class Deadlines(Generic[K, D]):
    """The deadlines of many keys (a connection's request tags) behind one shared timer.

    ``expire`` runs on the timer thread once the earliest deadline has passed; it calls
    ``pop_due`` (under its owner's lock) for the entries due, which arms the timer again for
    the next one. Entries whose keys were answered are dropped as the answers come
    (``answered``, in the usual order), and all at once when they outnumber the live keys
    (``add``), so the heap stays about as long as the requests in flight.

    Not thread-safe: the owner calls every method with its own lock held.

    Args:
        expire: called with no arguments on the timer thread when a deadline is due.
    """

    __slots__ = ("_armed_at", "_expire", "_heap", "_timer")

    def __init__(self, expire: Callable[[], None]) -> None:
        self._heap: list[tuple[float, K, D]] = []
        self._expire = expire
        self._timer: TimerHandle | None = None
        self._armed_at = math.inf

    def add(self, deadline: float, key: K, data: D, live: Keys) -> None:
        """Remember ``key`` (with ``data``) until ``deadline`` (``time.monotonic()`` time);
        ``live`` holds the keys still waiting (to drop the rest when they pile up)."""
        heap = self._heap
        if len(heap) > 64 and len(heap) > 2 * len(live):
            heap[:] = [entry for entry in heap if entry[1] in live]
            heapq.heapify(heap)
        heapq.heappush(heap, (deadline, key, data))
        if deadline < self._armed_at:
            self._arm(deadline)

    def answered(self, key: K) -> None:
        """``key`` needs no deadline any more: dropped at once if it is the earliest (the
        usual case: answers come in about the order of the requests), else later."""
        heap = self._heap
        if heap and heap[0][1] == key:
            heapq.heappop(heap)

    def pop_due(self) -> list[tuple[K, D]]:
        """The entries whose deadline has passed, earliest first; arms the timer for the
        next one. Some may have been answered meanwhile: the owner skips those."""
        self._timer = None
        self._armed_at = math.inf
        heap, now, due = self._heap, time.monotonic(), []
        while heap and heap[0][0] <= now:
            _, key, data = heapq.heappop(heap)
            due.append((key, data))
        if heap:
            self._arm(heap[0][0])
        return due

    def clear(self) -> None:
        """Forget every deadline and cancel the timer."""
        self._heap.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed_at = math.inf

    def __len__(self) -> int:
        return len(self._heap)

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = deadline
        self._timer = call_later(deadline - time.monotonic(), self._expire)
