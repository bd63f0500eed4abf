"""Polling a pipe for a moment before sleeping on it, when that brings data sooner.

On an idle machine, a thread that sleeps in ``poll()`` or ``read()`` is woken tens of
microseconds after the data arrives: its CPU has gone idle, and leaving an idle state costs.
A round trip to a child pays that twice (the child wakes for the request, the parent for the
answer), which is most of a small request's time, and the Python that runs after a wake-up
runs slower (cold caches). Asking ``poll(0)`` in a loop for up to ``budget`` seconds first
catches the data as it arrives. When the data comes later than that (a slow handler), or the
spin itself keeps the other side from running (a busy machine: it takes the CPU the other side
needs), the spin is CPU spent for nothing.

So ``BusyPoll`` counts what its spins find. It keeps a moving average of their *hits* (a spin
that found the data within the budget) and spins while at least ``HIT_SHARE`` of them hit. Once
they miss, waits sleep, and a trial spin now and then (one wait in ``EXPLORE_EVERY``, ever
further apart while trials find nothing, up to one in ``MAX_QUIET``) notices when spinning
would pay again.

Why hits, and not the lengths of the waits with a spin and without: each side's wait is the
other side's turn. While the child sleeps, the parent's spin waits for the child's wake-up too
and looks no faster than a sleep, and the same holds the other way; two sides that each chose
the shorter wait settled on both sleeping, at about two thirds of the round trips a second
of both spinning (``docs/performance.md``). A spin that hits costs no more CPU than the wait
it replaces.

Only the standard library is used here: the child runtime imports it. A ``BusyPoll`` is used
by one thread at a time (whoever reads the pipe), so it has no lock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

# The spin a wait may start with, by default (seconds). Over the time a small request's round
# trip takes on both sides, and small next to a wait that a spin cannot shorten.
DEFAULT_BUSY_POLL = 0.0001
# The largest budget accepted: a spin that long is a sleep that burns a CPU.
MAX_BUSY_POLL = 0.01
# While sleeping is preferred, one wait in this many spins, to see whether spinning pays again.
EXPLORE_EVERY = 64
# Trial spins that find nothing come ever further apart, up to one in this many waits.
MAX_QUIET = 4096
# Spinning is kept while at least this share of the recent spins found the data.
HIT_SHARE = 0.5
# Weight of each new spin in the moving average of hits.
_WEIGHT = 0.25

Poll = Callable[[float | None], list[tuple[int, int]]]


def check_busy_poll(value: object, option: str = "busy_poll") -> float:
    """``value`` as a busy-poll budget in seconds, or ``ValueError``/``TypeError`` saying why
    (naming ``option``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{option} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or not 0 <= value <= MAX_BUSY_POLL:
        raise ValueError(f"{option} must be between 0 and {MAX_BUSY_POLL} seconds, not {value!r}")
    return float(value)


class BusyPoll:
    """Waits on a ``select.poll`` object, spinning on ``poll(0)`` first while that pays.

    ``budget`` (seconds) bounds each spin; 0 never spins. See the module docstring.
    """

    __slots__ = ("_clock", "_explore_in", "_hits", "_quiet_for", "budget", "spins")

    def __init__(
        self, budget: float = DEFAULT_BUSY_POLL, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.budget = check_busy_poll(budget)
        self._clock = clock
        self._hits: float | None = None  # moving average: 1 for a spin that found data, 0 not
        # While sleeping is preferred: waits until the next trial spin, and the gap after it
        # (doubled by each trial that finds nothing, so that a spin that never pays costs
        # almost nothing; back to EXPLORE_EVERY when one finds data).
        self._explore_in = EXPLORE_EVERY
        self._quiet_for = EXPLORE_EVERY
        self.spins = 0  # waits that started with a spin: for tests and benchmarks

    def prefers_spinning(self) -> bool:
        """Whether waits start with a spin, trials aside: while the recent spins hit."""
        if self.budget <= 0:
            return False
        hits = self._hits
        return hits is None or hits >= HIT_SHARE

    def _spin_next(self) -> bool:
        """Whether this wait spins: while spinning pays, or now and then a trial."""
        if self.prefers_spinning():
            return True
        if self.budget <= 0:
            return False
        self._explore_in -= 1
        return self._explore_in <= 0

    def _spin(self, poll: Poll, start: float, limit: float) -> list[tuple[int, int]]:
        """``poll(0)`` until it has events or ``limit`` seconds from ``start`` have passed;
        counted as a hit or a miss."""
        self.spins += 1
        clock = self._clock
        end = start + limit
        while not (events := poll(0)):
            if clock() >= end:
                self._hit(0.0)
                # Found nothing: while sleeping is preferred, the next trial comes later.
                self._quiet_for = min(self._quiet_for * 2, MAX_QUIET)
                self._explore_in = self._quiet_for
                return events
        self._hit(1.0)
        self._quiet_for = self._explore_in = EXPLORE_EVERY
        return events

    def _hit(self, sample: float) -> None:
        hits = self._hits
        self._hits = sample if hits is None else hits + (sample - hits) * _WEIGHT

    def wait(self, poll: Poll, timeout: float | None) -> list[tuple[int, int]]:
        """``poll(milliseconds)``'s events once there are some, or ``[]`` after ``timeout``
        seconds (None: no limit), spinning on ``poll(0)`` first while that pays."""
        if self._spin_next():
            clock = self._clock
            start = clock()
            limit = self.budget if timeout is None else min(self.budget, timeout)
            events = self._spin(poll, start, limit)
            if events:
                return events
            if timeout is not None:
                left = start + timeout - clock()
                return poll(left * 1000.0) if left > 0 else poll(0)
            return poll(None)
        return poll(None if timeout is None else timeout * 1000.0)

    def read(self, poll: Poll, read: Callable[[], bytes]) -> bytes:
        """``read()``, once ``poll`` says there is something to read while spinning pays;
        otherwise at once (one blocking system call, where polling first would be two)."""
        if self._spin_next():
            self._spin(poll, self._clock(), self.budget)
        return read()
