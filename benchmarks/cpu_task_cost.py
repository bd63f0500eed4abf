#!/usr/bin/env python3
"""Where the parent's CPU goes on CPU-bound tasks: the caller's thread, per task.

    .venv/bin/python benchmarks/cpu_task_cost.py [--workers N] [--task burn|echo] [--count N]
                                                 [--repeat R]

CPU-bound tasks (``pool_workload.burn``; ``--task echo`` for small echoes), 64 outstanding
from one thread, through one controller's connection (``--workers 0``, the default) or a
``ProcessPool`` of ``--workers`` workers. Per task: the parent's CPU (every thread,
``/proc/self/task/*/schedstat``), the caller's thread CPU (``time.thread_time``) in ``get()``
and in ``call()`` apart, and how often the parent slept (voluntary context switches). With
echoes the caller hardly sleeps and the same ``call()`` and ``get()`` cost a few µs; with
CPU-bound tasks it sleeps for each answer, and what runs after a wake-up runs several times
slower.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from benchmarks._common import WINDOW
from benchmarks.pool_workload import BURN, Burn
from benchmarks.pools import WORKER, ready_pool
from benchmarks.workload import Echo
from juicectl import ProcessController


def _parent_cpu() -> float:
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except OSError:
            pass  # a thread that ended meanwhile
    return total / 1e9


def _sleeps() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw


def _run(call: Callable[[], Any], count: int) -> tuple[float, float]:
    """``count`` tasks, ``WINDOW`` outstanding; the caller's CPU in get() and in call()."""
    clock = time.thread_time
    in_get = in_call = 0.0
    pending = deque(call() for _ in range(WINDOW))
    sent = WINDOW
    while pending:
        start = clock()
        pending.popleft().get(timeout=60)
        got = clock()
        in_get += got - start
        if sent < count:
            pending.append(call())
            sent += 1
            in_call += clock() - got
    return in_get, in_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=0, help="0: one controller alone")
    parser.add_argument("--task", choices=("burn", "echo"), default="burn")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
    )
    command, arguments = (Burn, {"n": BURN}) if options.task == "burn" else (Echo, {"value": "x"})
    if options.workers:
        pool = ready_pool(options.workers)
        call: Callable[[], Any] = lambda: pool.call(command, **arguments)  # noqa: E731
        close = pool.close
        what = f"pool x{options.workers}"
    else:
        controller = ProcessController.start(WORKER)
        connection = controller.get_process().get(timeout=30)
        call = lambda: connection.call(command, **arguments)  # noqa: E731
        close = controller.close
        what = "controller"
    try:
        _run(call, 2 * WINDOW)
        rows = []
        for _ in range(options.repeat):
            cpu, sleeps, start = _parent_cpu(), _sleeps(), time.perf_counter()
            in_get, in_call = _run(call, options.count)
            elapsed = time.perf_counter() - start
            n = options.count
            rows.append((n / elapsed, (_parent_cpu() - cpu) / n * 1e6, in_get / n * 1e6,
                         in_call / n * 1e6, (_sleeps() - sleeps) / n))
    finally:
        close()
    medians = (statistics.median(column) for column in zip(*rows, strict=True))
    rate, parent, get, put, slept = medians
    print(f"{what}, {options.task}: {rate:,.0f} tasks/s; per task: parent CPU "
          f"{parent:.1f} µs, the caller's get() {get:.1f} µs and call() {put:.1f} µs, "
          f"parent sleeps {slept:.2f} (medians of {options.repeat})")


if __name__ == "__main__":
    main()
