"""What every benchmark driver shares: the workload, the sizes, timing and the report line.

Each driver (``drive_juicectl.py``, ``drive_amp.py``, ``drive_pool.py``, ``drive_cat.py``) is
run as a fresh process per measurement by ``run.py``: ``driver SCENARIO COUNT``. It sets up,
warms up, measures one scenario and prints one JSON line (the last line of its stdout):

    {"scenario": "seq", "value": 12345.6, "unit": "req/s", ...extra figures...}

A fresh process per measurement keeps the implementations from disturbing each other
(Twisted's reactor cannot even be restarted in one process), and lets ``run.py`` alternate
them round by round on the same machine.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent

#: The small echo value, the same for every implementation.
SMALL = "hello, juice world"
#: The large value: 60,000 bytes (Twisted AMP caps a value at 65,535).
BIG = "x" * 60_000
#: Requests in flight at once in the concurrent scenarios.
WINDOW = 64
#: Caller threads in the threaded scenario (each keeps WINDOW // THREADS in flight).
THREADS = 8
#: Requests sent before the clock starts.
WARMUP = 300

#: The scenarios, in report order, with a short description and their unit.
SCENARIOS: dict[str, tuple[str, str]] = {
    "seq": ("small echo, sequential (one caller, one in flight)", "req/s"),
    "c64": (f"small echo, {WINDOW} in flight from one caller", "req/s"),
    "t8": (f"small echo, {WINDOW} in flight from {THREADS} threads", "req/s"),
    "big": ("60,000-byte echo, sequential", "req/s"),
    "big64": (f"60,000-byte echo, {WINDOW} in flight from one caller", "req/s"),
    "cold": ("launch -> first Echo answered", "ms"),
    "restart": ("SIGKILL -> restarted, first Echo answered", "ms"),
    "rest": ("one ready controller at rest", "threads"),
    # Pools (benchmarks/pools.py), two workers unless said otherwise:
    "pool_echo": ("pools: small echo, 64 outstanding", "req/s"),
    "pool_cpu": ("pools: CPU-bound tasks, 64 outstanding", "req/s"),
    "pool_cold": ("pools: start -> first answer", "ms"),
    "pool_kill": ("pools: one worker SIGKILLed with 8 outstanding: failed per kill", "failed"),
    "pool_recycle": ("pools: echo, 64 outstanding, a worker recycled every 500 calls", "req/s"),
    "pool_orphan": ("pools: the parent SIGKILLed: workers alive 1 s later", "workers"),
}


def report(scenario: str, value: float, **extra: Any) -> None:
    """Print the one result line ``run.py`` reads."""
    unit = SCENARIOS[scenario][1]
    line = {"scenario": scenario, "value": value, "unit": unit, **extra}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def parse_args() -> tuple[str, int, list[str]]:
    """``driver SCENARIO COUNT [flags...]`` -> (scenario, count, flags)."""
    if len(sys.argv) < 3 or sys.argv[1] not in SCENARIOS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(SCENARIOS)}}} COUNT [flags]")
    return sys.argv[1], int(sys.argv[2]), sys.argv[3:]


def rate(count: int, seconds: float) -> float:
    """Requests per second."""
    return count / seconds if seconds > 0 else float("inf")


def sequential(call: Callable[[str], str], value: str, count: int) -> float:
    """Time ``count`` calls one after the other; return requests per second."""
    for _ in range(min(WARMUP, count)):
        call(value)
    start = time.perf_counter()
    for _ in range(count):
        call(value)
    return rate(count, time.perf_counter() - start)


def windowed(submit: Callable[[str], Any], wait: Callable[[Any], Any], value: str,
             count: int, window: int) -> None:
    """Keep ``window`` requests in flight until ``count`` have been answered.

    Answers come back in order from a sequential server, so waiting for the oldest and then
    sending one more keeps the window full.
    """
    pending: deque[Any] = deque()
    sent = 0
    while sent < min(window, count):
        pending.append(submit(value))
        sent += 1
    while pending:
        wait(pending.popleft())
        if sent < count:
            pending.append(submit(value))
            sent += 1


def concurrent_rate(submit: Callable[[str], Any], wait: Callable[[Any], Any], value: str,
                    count: int, threads: int) -> float:
    """``WINDOW`` in flight in all, from ``threads`` caller threads; requests per second."""
    windowed(submit, wait, value, min(WARMUP, count), WINDOW)
    if threads == 1:
        start = time.perf_counter()
        windowed(submit, wait, value, count, WINDOW)
        return rate(count, time.perf_counter() - start)
    share = count // threads
    barrier = threading.Barrier(threads + 1)

    def caller() -> None:
        barrier.wait()
        windowed(submit, wait, value, share, WINDOW // threads)

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    return rate(share * threads, time.perf_counter() - start)


def median_ms(samples: list[float]) -> float:
    """The median of samples in seconds, in milliseconds."""
    return statistics.median(samples) * 1000.0


def rss_kib(pid: int | None = None) -> int:
    """Resident memory of a process (default: this one), in KiB, from /proc."""
    path = f"/proc/{pid or os.getpid()}/status"
    with open(path) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def thread_count(pid: int | None = None) -> int:
    """OS threads of a process (default: this one), from /proc."""
    return len(os.listdir(f"/proc/{pid or os.getpid()}/task"))
