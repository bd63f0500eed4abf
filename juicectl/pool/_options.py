"""A pool's options, checked where they are written, and the CPU budget of busy polling.

Plain data, like ``juicectl.policy``: ``PoolOptions`` holds how many workers a pool keeps,
when it grows, shrinks and recycles them, and how it dispatches; each value is checked when
the object is made, so a bad one fails at ``ProcessPool.start()`` with the option's name.
``spin_plan`` is the rule that keeps the processes that busy-poll within the machine's cores
(see ``docs/pools.md``, "CPU budget").
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

from juicectl._busy_poll import DEFAULT_BUSY_POLL, check_busy_poll

__all__ = ["MAX_WORKERS", "Dispatch", "GiveUpAction", "PoolOptions", "SpinPlan", "spin_plan"]

#: The most workers a pool may have (``size``, ``min_size``, ``max_size``). Each is a process
#: with its pipes and about five threads here: a pool far larger is a mistake (``size=10**9``
#: would start processes until the machine gives out), and is refused at the door.
MAX_WORKERS = 1024

Dispatch = Literal["least_loaded", "round_robin"]
GiveUpAction = Literal["replace", "leave"]


def _check_count(name: str, value: object, *, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < least:
        raise ValueError(f"{name} must be >= {least}, not {value!r}")
    return value


def _check_size(name: str, value: object, *, least: int) -> int:
    """A number of workers: a count, and at most ``MAX_WORKERS``."""
    count = _check_count(name, value, least=least)
    if count > MAX_WORKERS:
        raise ValueError(f"{name} must be at most {MAX_WORKERS} (MAX_WORKERS), not {count!r}")
    return count


def _check_seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or None, not {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be > 0 seconds or None, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class PoolOptions:
    """How a ``ProcessPool`` sizes, recycles and feeds its workers.

    Attributes:
        min_size: the fewest workers kept (0 is allowed: the pool then starts a worker for
            the first request, one cold start).
        max_size: the most workers at once; the pool grows towards it while every worker is
            busy, and starts ``min_size`` at once.
        max_idle: seconds a worker above ``min_size`` may sit with nothing in flight before
            it is retired (None: never).
        recycle_after_calls: retire a worker after this many requests (None: never); its
            replacement starts first and takes the new requests once ready.
        recycle_after_seconds: likewise after this long in service (None: never).
        dispatch: ``"least_loaded"`` (the first worker while the workers' answers wait to
            be read, unless it stalls; else an idle worker, in turn; else the one with the
            fewest requests in flight: see ``docs/pools.md``) or ``"round_robin"`` (in turn,
            skipping full workers). A request with a ``key`` always goes to that key's
            worker, whatever the dispatch.
        max_per_worker: the most requests in flight on one worker; past it requests wait in
            the pool's queue.
        max_queued: the most requests the pool holds unwritten; past it ``call()`` raises
            ``TooManyRequests``.
        on_give_up: what becomes of a worker whose restart policy gave up: ``"replace"``
            starts a new one in its place (after a backoff, and at most as often as the
            restart policy allows: past that the worker leaves), ``"leave"`` removes it.

    Raises:
        TypeError: an option has the wrong type (the message names it and the value).
        ValueError: an option is out of its range.
    """

    min_size: int = 1
    max_size: int = 1
    max_idle: float | None = None
    recycle_after_calls: int | None = None
    recycle_after_seconds: float | None = None
    dispatch: Dispatch = "least_loaded"
    max_per_worker: int = 64
    max_queued: int = 1024
    on_give_up: GiveUpAction = "replace"

    def __post_init__(self) -> None:
        _check_size("min_size", self.min_size, least=0)
        _check_size("max_size", self.max_size, least=1)
        if self.min_size > self.max_size:
            raise ValueError(
                f"min_size ({self.min_size}) must not be above max_size ({self.max_size})"
            )
        _check_seconds("max_idle", self.max_idle)
        if self.recycle_after_calls is not None:
            _check_count("recycle_after_calls", self.recycle_after_calls, least=1)
        _check_seconds("recycle_after_seconds", self.recycle_after_seconds)
        if self.dispatch not in ("least_loaded", "round_robin"):
            raise ValueError(
                f"dispatch must be 'least_loaded' or 'round_robin', not {self.dispatch!r}"
            )
        _check_count("max_per_worker", self.max_per_worker, least=1)
        _check_count("max_queued", self.max_queued, least=0)
        if self.on_give_up not in ("replace", "leave"):
            raise ValueError(f"on_give_up must be 'replace' or 'leave', not {self.on_give_up!r}")

    @classmethod
    def sized(
        cls,
        size: int | None,
        min_size: int | None,
        max_size: int | None,
        **options: object,
    ) -> PoolOptions:
        """``size=N`` (``min_size = max_size = N``), or ``min_size``/``max_size``; with none
        of them, one worker per core (at most ``MAX_WORKERS``). ``size`` with either of the
        others is an error."""
        if size is not None:
            if min_size is not None or max_size is not None:
                raise TypeError("give size=N, or min_size and max_size, not both")
            _check_size("size", size, least=1)
            min_size = max_size = size
        elif min_size is None and max_size is None:
            min_size = max_size = min(os.cpu_count() or 1, MAX_WORKERS)
        elif max_size is None:
            assert min_size is not None
            max_size = max(_check_size("min_size", min_size, least=0), 1)
        elif min_size is None:
            _check_size("max_size", max_size, least=1)
            min_size = min(1, max_size)
        return cls(min_size=min_size, max_size=max_size, **options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SpinPlan:
    """Who busy-polls in a pool: the parent's budget per connection and the workers'."""

    parent: float
    """The parent's ``busy_poll`` for each worker's connection (seconds; 0: off)."""
    worker: float | None
    """The workers' budget (``JUICECTL_BUSY_POLL``): 0 turns their polling off; None leaves
    each worker to its own setting."""
    spinners: int
    """How many processes may spin at once under this plan: the parent counts one (its
    threads share one interpreter lock), each polling worker one."""
    polling_workers: int = 0
    """How many workers poll under this plan. Where the rule turns the workers' polling off
    (``worker`` 0, not given), the first ``polling_workers`` in the pool's order (its lowest
    slots, which its dispatch keeps small tasks on) keep their own setting instead."""


def spin_plan(
    max_size: int,
    cores: int,
    *,
    parent: float = DEFAULT_BUSY_POLL,
    worker: float | None = None,
) -> SpinPlan:
    """The rule: at most ``cores`` processes spin at once.

    The parent is one spinner whatever the number of callers (a spinning caller holds the
    interpreter lock), and keeps its budget: it is the side every answer waits on. Every
    worker polls while the parent and ``max_size`` workers together fit in ``cores``;
    otherwise only the first ``cores`` minus the parent's one do, and the others are launched
    with polling off and sleep on their pipe. The first ones are those the dispatch keeps
    small tasks on while they keep up (a worker that polls answers them sooner); work the
    workers are the slower at keeps every one of them busy, and a worker busy in its handler
    does not spin. An explicit ``worker`` budget is kept as given, for every worker.
    """
    check_busy_poll(parent)
    parent_spins = 1 if parent > 0 else 0
    polling = max_size
    if worker is not None:
        check_busy_poll(worker, "worker_busy_poll")
        workers: float | None = worker
        if worker == 0:
            polling = 0
    elif parent_spins + max_size <= cores:
        workers = None  # room for every worker to spin: their own setting stands
    else:
        workers = 0.0
        polling = max(0, cores - parent_spins)
    return SpinPlan(parent=parent, worker=workers, spinners=parent_spins + polling,
                    polling_workers=polling)
