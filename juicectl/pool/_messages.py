"""The pool actor's messages (orders from the handle, reports from its workers) and the
pool-level events it tells subscribers. Frozen dataclasses, a docstring per field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from juicectl.messages import StopResult, TerminationReason

__all__ = [
    "GetPoolStats",
    "ReplaceDue",
    "StopPool",
    "Tick",
    "WorkerChanged",
    "WorkerClosed",
    "WorkerGaveUp",
    "WorkerLost",
    "WorkerReady",
    "WorkerStartFailed",
]

# --- orders from the handle -------------------------------------------------------------------


@dataclass(frozen=True)
class StopPool:
    """Stop every worker (in parallel), then the pool actor."""

    reply_to: Any
    """A future set with ``{worker name: StopResult}`` once every worker has stopped."""


@dataclass(frozen=True)
class GetPoolStats:
    """Ask for the pool's figures (``ProcessPool.stats``)."""

    reply_to: Any
    """A future set with a ``dict``."""


# --- reports to the pool actor ----------------------------------------------------------------


@dataclass(frozen=True)
class WorkerReady:
    """A worker's controller handed out the connection to its ready child."""

    worker: str
    """The worker's name."""
    connection: Any
    """The ``Connection``."""


@dataclass(frozen=True)
class WorkerStartFailed:
    """A worker's controller could not get a child ready."""

    worker: str
    """The worker's name."""
    error: BaseException
    """Why (a ``ProcessUnavailable``, ``ProcessLaunchError`` ...)."""


@dataclass(frozen=True)
class WorkerClosed:
    """A worker's controller is closed: its child has exited and its actors stopped."""

    worker: str
    """The worker's name."""
    result: StopResult | None
    """How the child's stop ended (None if the close timed out)."""


@dataclass(frozen=True)
class Tick:
    """Time to look for idle and old workers (the pool's own timer)."""


@dataclass(frozen=True)
class ReplaceDue:
    """The backoff before replacing a worker that gave up is over."""

    slot: int
    """The slot to fill again."""


# --- events told to the pool's subscribers ----------------------------------------------------


@dataclass(frozen=True)
class WorkerChanged:
    """A worker of a pool moved from one state to another (see ``WorkerState``)."""

    pool: str
    """The pool's name."""
    worker: str
    """The worker's name (its controller's)."""
    old: str
    """The previous state."""
    new: str
    """The new state."""
    cause: str
    """The event that moved it."""


@dataclass(frozen=True)
class WorkerLost:
    """A worker's child ended without being asked to, and what became of its requests."""

    pool: str
    """The pool's name."""
    worker: str
    """The worker's name."""
    reason: TerminationReason
    """Why the child ended."""
    resent: int
    """Requests it cannot have started, sent again to other workers."""
    failed: int
    """Requests it may have started, failed with ``ProcessUnavailable``."""


@dataclass(frozen=True)
class WorkerGaveUp:
    """A worker's restart policy gave up (or would never restart it)."""

    pool: str
    """The pool's name."""
    worker: str
    """The worker's name."""
    replaced: bool
    """True: a new worker takes its place after a backoff; False: it left the pool."""
