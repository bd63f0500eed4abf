"""Polling a pipe for a moment before sleeping on it, when that brings data sooner.

On an idle machine, a thread that sleeps in ``poll()`` or ``read()`` is woken tens of
microseconds after the data arrives: its CPU has gone idle, and leaving an idle state costs.
A round trip to a child pays that twice (the child wakes for the request, the parent for the
answer), which is most of a small request's time. Asking ``poll(0)`` in a loop for up to
``budget`` seconds first catches the data as it arrives. On a busy machine the loop does the
opposite: it takes a CPU that the other side needs, and the data comes later.

So ``BusyPoll`` measures. It keeps a moving average of how long waits took with a spin first
and with none, uses the faster way, and tries the other way one wait in ``EXPLORE_EVERY`` to
notice when the machine changes. Spinning must win clearly (``SPIN_MUST_SAVE``), since it
costs CPU. A wait longer than ``budget`` counts as twice the budget at most: a spin could not
have shortened it, and idle gaps would otherwise swamp the averages.

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
# One wait in this many uses the way not currently preferred, to keep its average fresh.
EXPLORE_EVERY = 64
# While sleeping is preferred, trial spins that find nothing come ever further apart, up to one
# in this many waits.
MAX_QUIET = 4096
# Spinning is preferred only when its waits are shorter than this share of the others.
SPIN_MUST_SAVE = 0.8
# Weight of each new wait in its way's moving average.
_WEIGHT = 0.25

Poll = Callable[[float | None], list[tuple[int, int]]]


def check_busy_poll(value: object) -> float:
    """``value`` as a busy-poll budget in seconds, or ``ValueError``/``TypeError`` saying why."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"busy_poll must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or not 0 <= value <= MAX_BUSY_POLL:
        raise ValueError(f"busy_poll must be between 0 and {MAX_BUSY_POLL} seconds, not {value!r}")
    return float(value)


class BusyPoll:
    """Waits on a ``select.poll`` object, spinning on ``poll(0)`` first when that pays.

    ``budget`` (seconds) bounds each spin; 0 never spins. See the module docstring.
    """

    __slots__ = (
        "_clock",
        "_count",
        "_explore_in",
        "_quiet_for",
        "_sleep_average",
        "_spin_average",
        "budget",
        "spins",
    )

    def __init__(
        self, budget: float = DEFAULT_BUSY_POLL, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.budget = check_busy_poll(budget)
        self._clock = clock
        self._count = 0
        self._spin_average: float | None = None
        self._sleep_average: float | None = None
        # While sleeping is preferred: waits until the next trial spin, and the gap after it
        # (doubled by each trial that finds nothing, so that a spin that never pays costs
        # almost nothing; back to EXPLORE_EVERY when one finds data).
        self._explore_in = EXPLORE_EVERY
        self._quiet_for = EXPLORE_EVERY
        self.spins = 0  # waits that started with a spin: for tests and benchmarks

    def prefers_spinning(self) -> bool:
        """Whether waits start with a spin, trials of the other way aside."""
        spin, sleep = self._spin_average, self._sleep_average
        if self.budget <= 0:
            return False
        if spin is None:
            return True
        return sleep is not None and spin < sleep * SPIN_MUST_SAVE

    def _spin_next(self) -> bool:
        """Whether this wait spins: the preferred way, or now and then a trial of the other."""
        preferred = self.prefers_spinning()
        if self._sleep_average is None:
            return preferred  # the first wait spins, the second sleeps: both get measured
        if preferred:
            self._count += 1
            return self._count % EXPLORE_EVERY != 0
        if self.budget <= 0:
            return False
        self._explore_in -= 1
        return self._explore_in <= 0

    def _spin(self, poll: Poll, start: float, limit: float) -> list[tuple[int, int]]:
        """``poll(0)`` until it has events or ``limit`` seconds from ``start`` have passed."""
        self.spins += 1
        clock = self._clock
        end = start + limit
        while not (events := poll(0)):
            if clock() >= end:
                # Found nothing: while sleeping is preferred, the next trial comes later.
                self._quiet_for = min(self._quiet_for * 2, MAX_QUIET)
                self._explore_in = self._quiet_for
                return events
        self._quiet_for = self._explore_in = EXPLORE_EVERY
        return events

    def wait(self, poll: Poll, timeout: float | None) -> list[tuple[int, int]]:
        """``poll(milliseconds)``'s events once there are some, or ``[]`` after ``timeout``
        seconds (None: no limit), spinning on ``poll(0)`` first when that pays."""
        clock = self._clock
        start = clock()
        spun = self._spin_next()
        if spun:
            limit = self.budget if timeout is None else min(self.budget, timeout)
            events = self._spin(poll, start, limit)
            if events:
                self._record(True, clock() - start)
                return events
        if timeout is None:
            events = poll(None)
        else:
            left = start + timeout - clock()
            events = poll(left * 1000.0) if left > 0 else poll(0)
        if events:
            self._record(spun, clock() - start)
        return events

    def read(self, poll: Poll, read: Callable[[], bytes]) -> bytes:
        """``read()``, once ``poll`` says there is something to read when spinning first pays;
        otherwise at once (one blocking system call, where polling first would be two)."""
        clock = self._clock
        start = clock()
        spun = self._spin_next()
        if spun:
            self._spin(poll, start, self.budget)
        data = read()
        self._record(spun, clock() - start)
        return data

    def _record(self, spun: bool, elapsed: float) -> None:
        elapsed = min(elapsed, 2 * self.budget)
        if spun:
            self._spin_average = _moved(self._spin_average, elapsed)
        else:
            self._sleep_average = _moved(self._sleep_average, elapsed)


def _moved(average: float | None, sample: float) -> float:
    """A moving average after one more sample (the first sample starts it)."""
    return sample if average is None else average + (sample - average) * _WEIGHT
