#!/usr/bin/env python3
"""How often a pool's parent wakes up per CPU-bound task, and what its threads cost.

    .venv/bin/python benchmarks/pool_wakeups.py [COUNT] [SIZE]

A pool of ``SIZE`` workers (2 by default) runs ``COUNT`` tasks of ``pool_workload.burn`` (800
by default), 64 outstanding, as ``pools.py pool_cpu`` does. Around that loop it reads every
thread's ``/proc/self/task/TID/schedstat`` (CPU time and times run) and each worker's
``/proc/PID/schedstat``, then prints one JSON line: tasks a second; per task the caller's
thread's CPU, the reader threads' CPU, the whole parent's CPU (every thread) and its threads'
wake-ups; and how much of the wall time the workers were busy. Linux only (schedstat).

A caller of slow tasks sleeps between answers, and a wake-up after milliseconds asleep costs
far more CPU than the code it runs (``wake_cost.py``): the wake-ups per task are what the
parent's CPU per task follows.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.pool_workload import BURN, Burn
from benchmarks.pools import ready_pool, windowed


def _threads() -> dict[int, tuple[str, int, int]]:
    """Each thread of this process: its name, CPU nanoseconds and times run."""
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    found = {}
    for entry in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{entry}/schedstat") as stat:
                cpu, _, runs = (int(field) for field in stat.read().split())
        except OSError:
            continue  # a thread that ended meanwhile
        found[int(entry)] = (names.get(int(entry), "?"), cpu, runs)
    return found


def _workers_cpu(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/schedstat") as stat:
            total += int(stat.read().split()[0])
    return total


def main(argv: list[str]) -> None:
    count = int(argv[0]) if argv else 800
    size = int(argv[1]) if len(argv) > 1 else 2
    pool = ready_pool(size)
    try:
        pids = [worker["pid"] for worker in pool.stats()["workers"]]
        windowed(lambda: pool.call(Burn, n=BURN), lambda f: f.get(), 2 * size)
        before, workers_before = _threads(), _workers_cpu(pids)
        start = time.perf_counter()
        rate = windowed(lambda: pool.call(Burn, n=BURN), lambda f: f.get(), count)
        wall = time.perf_counter() - start
        after, workers_after = _threads(), _workers_cpu(pids)
    finally:
        pool.close()
    caller = readers = parent = 0.0
    wakeups = 0
    for tid, (name, cpu, runs) in after.items():
        _, cpu_before, runs_before = before.get(tid, (name, 0, 0))
        spent = (cpu - cpu_before) / 1e3 / count
        parent += spent
        wakeups += runs - runs_before
        if name == "MainThread":
            caller = spent
        elif name.endswith("-stdout"):
            readers += spent
    print(json.dumps({
        "tasks_per_s": round(rate, 1),
        "caller_cpu_us": round(caller, 1),
        "readers_cpu_us": round(readers, 1),
        "parent_cpu_us": round(parent, 1),
        "parent_wakeups": round(wakeups / count, 2),
        "workers_busy_percent": round(
            (workers_after - workers_before) / 1e9 / wall / size * 100, 1
        ),
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
