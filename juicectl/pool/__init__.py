"""Pools: N worker processes behind one handle, each an ordinary ``ProcessController``.

``ProcessPool.start(argv, size=N)`` starts the workers; ``pool.call(Command, **kw)`` sends a
request to the least loaded one (or the one a ``key`` maps to) and returns a future; a worker
that dies is restarted under its restart policy while the others serve, and the requests it
cannot have started go to another worker. See ``docs/pools.md``.
"""

from __future__ import annotations

from juicectl.pool._actor import WorkerState
from juicectl.pool._dispatch import PoolFuture
from juicectl.pool._messages import WorkerChanged, WorkerGaveUp, WorkerLost
from juicectl.pool._options import MAX_WORKERS, PoolOptions, SpinPlan, spin_plan
from juicectl.pool._pool import ProcessPool

__all__ = [
    "MAX_WORKERS",
    "PoolFuture",
    "PoolOptions",
    "ProcessPool",
    "SpinPlan",
    "WorkerChanged",
    "WorkerGaveUp",
    "WorkerLost",
    "WorkerState",
    "spin_plan",
]
