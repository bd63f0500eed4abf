"""Fixtures for the pool tests: pools of real workers, closed after each test."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from juicectl import ProcessPool, ProcessUnavailable, RestartPolicy

WORKER = [sys.executable, "-m", "juicectl.child", "tests.pool.workers:PoolWorker"]
CONCURRENT = [sys.executable, "-m", "juicectl.child", "tests.pool.workers:ConcurrentWorker"]

#: Restarts at once (no backoff): the tests wait for the pool to be whole again.
QUICK = RestartPolicy(initial_delay=0.0, jitter=0.0)


@pytest.fixture
def make_pool() -> Iterator[Callable[..., ProcessPool]]:
    pools: list[ProcessPool] = []

    def make(argv: list[str] | None = None, **options: Any) -> ProcessPool:
        options.setdefault("restart", QUICK)
        pool = ProcessPool.start(argv or WORKER, **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for ``condition`` (a bound, so a broken test fails instead of hanging)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {condition}")
        time.sleep(0.02)


def ready_pids(pool: ProcessPool) -> list[int]:
    """The pids of the workers serving now."""
    return [w["pid"] for w in pool.stats()["workers"] if w["state"] == "ready"]


def pids_or_failed(futures: list[Any]) -> list[int | str]:
    """Each request's answering pid, or ``"failed"`` where it failed with
    ``ProcessUnavailable`` (any other error fails the test)."""
    outcomes: list[int | str] = []
    for future in futures:
        try:
            outcomes.append(future.get(timeout=30)["pid"])
        except ProcessUnavailable:
            outcomes.append("failed")
    return outcomes
