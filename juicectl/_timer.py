"""One shared timer thread for the whole library.

Request timeouts, stop escalation steps and restart backoffs all need "call this later".
``threading.Timer`` would cost a thread per pending timeout (one per request in flight);
instead a single daemon thread keeps a heap of deadlines. Callbacks run on that thread and
must be quick: they settle a future or ``tell()`` an actor, nothing more.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

from juicectl._log import get_logger

log = get_logger(__name__)


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
                    self._condition.wait(wait)
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
