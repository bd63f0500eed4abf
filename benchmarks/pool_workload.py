"""The pool benchmarks' work: echo (the path) and a CPU-bound task, the same for every pool.

Plain functions for the executors (they pickle them by name), an ampoule child, and the
juicectl worker, served by ``python -m juicectl.child benchmarks.pool_workload:PoolWorker``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from benchmarks.workload import EchoWorker
from juicectl.juice import Command, Integer

#: Iterations of the CPU-bound task (a few milliseconds of pure Python).
BURN = 50_000


def burn(n: int = BURN) -> int:
    """The CPU-bound task: a loop of pure Python that holds the interpreter throughout."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def echo(value: str) -> str:
    """The echo task: no work."""
    return value


def slow(seconds: float) -> int:
    """Sleep, then say which process ran it."""
    time.sleep(seconds)
    return os.getpid()


class Burn(Command):
    """Run ``burn(n)``; answer its result's low bits (so that the work is not optimised away)."""

    arguments = [("n", Integer())]
    response = [("result", Integer())]


class Sleep(Command):
    """Sleep for ``ms`` milliseconds; answer the worker's pid."""

    arguments = [("ms", Integer())]
    response = [("pid", Integer())]


class PoolWorker(EchoWorker):
    """Echo, the CPU-bound task, and a sleep."""

    @Burn.responder
    def burn(self, n: int) -> dict[str, Any]:
        return {"result": burn(n) & 0xFFFF}

    @Sleep.responder
    def sleep(self, ms: int) -> dict[str, Any]:
        time.sleep(ms / 1000)
        return {"pid": os.getpid()}
