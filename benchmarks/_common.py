"""What every benchmark driver shares: the workload, the sizes, timing and the report line.

Each driver (``drive_juicectl.py``, ``drive_amp.py``, ``drive_pool.py``, ``drive_cat.py``) is
run as a fresh process per measurement by ``run.py``: ``driver SCENARIO COUNT``. It sets up,
warms up, measures one scenario and prints one JSON line (the last line of its stdout):

    {"scenario": "seq", "value": 12345.6, "unit": "req/s", ...extra figures...}

A fresh process per measurement keeps the implementations from disturbing each other
(Twisted's reactor cannot even be restarted in one process), and lets ``run.py`` alternate
them round by round on the same machine.

The steady scenarios also report each request's latency (``p50_us``, ``p99_us``,
``p999_us``: from the call to the caller holding its answer, one clock read per request) and
the CPU time per request of both sides (``parent_cpu_us``: ``getrusage`` of the driver, every
thread; ``child_cpu_us``: the child's threads, ``/proc/PID/task/*/schedstat``), measured over
the timed requests only.
"""

from __future__ import annotations

import json
import os
import resource
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


class Meter:
    """Latencies and CPU time of one measured run (see the module's docstring)."""

    def __init__(self, count: int, child_pid: int | None) -> None:
        self.count = count
        self.latencies: list[float] = []
        self._child_pid = child_pid
        self._parent = self._child = 0.0

    def start(self) -> None:
        """Take the CPU counters as the clock starts."""
        self._parent, self._child = _own_cpu(), _process_cpu(self._child_pid)

    def figures(self, seconds: float) -> dict[str, Any]:
        """The run's figures: its rate, latency percentiles and CPU per request."""
        parent, child = _own_cpu() - self._parent, _process_cpu(self._child_pid) - self._child
        figures: dict[str, Any] = {"value": rate(self.count, seconds),
                                   **percentiles(self.latencies)}
        figures["parent_cpu_us"] = round(parent / self.count * 1e6, 2)
        if self._child_pid is not None:
            figures["child_cpu_us"] = round(child / self.count * 1e6, 2)
        return figures


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int | None) -> float:
    """CPU seconds of every live thread of ``pid`` (nanosecond resolution), 0 for None."""
    if pid is None:
        return 0.0
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except FileNotFoundError:
            continue  # the thread ended meanwhile
    return total / 1e9


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50, p99 and p99.9 of latencies in seconds, in microseconds."""
    if not latencies:
        return {}
    ordered = sorted(latencies)
    last = len(ordered) - 1

    def at(fraction: float) -> float:
        return round(ordered[min(last, int(fraction * len(ordered)))] * 1e6, 1)

    return {"p50_us": at(0.5), "p99_us": at(0.99), "p999_us": at(0.999)}


def sequential(call: Callable[[str], object], value: str, count: int,
               child_pid: int | None = None) -> dict[str, Any]:
    """Time ``count`` calls one after the other; return the run's figures (``Meter``)."""
    for _ in range(min(WARMUP, count)):
        call(value)
    meter = Meter(count, child_pid)
    latencies = meter.latencies
    clock = time.perf_counter
    meter.start()
    start = then = clock()
    for _ in range(count):
        call(value)
        now = clock()
        latencies.append(now - then)
        then = now
    return meter.figures(then - start)


def windowed(submit: Callable[[str], Any], wait: Callable[[Any], Any], value: str,
             count: int, window: int, latencies: list[float] | None = None) -> None:
    """Keep ``window`` requests in flight until ``count`` have been answered.

    Answers come back in order from a sequential server, so waiting for the oldest and then
    sending one more keeps the window full. Each request's latency (its submit to its wait's
    return) goes to ``latencies`` if given.
    """
    clock = time.perf_counter
    pending: deque[tuple[float, Any]] = deque()
    sent = 0
    while sent < min(window, count):
        pending.append((clock(), submit(value)))
        sent += 1
    while pending:
        submitted, future = pending.popleft()
        wait(future)
        if latencies is not None:
            latencies.append(clock() - submitted)
        if sent < count:
            pending.append((clock(), submit(value)))
            sent += 1


def concurrent_rate(submit: Callable[[str], Any], wait: Callable[[Any], Any], value: str,
                    count: int, threads: int, child_pid: int | None = None) -> dict[str, Any]:
    """``WINDOW`` in flight in all, from ``threads`` caller threads; the run's figures."""
    windowed(submit, wait, value, min(WARMUP, count), WINDOW)
    if threads == 1:
        meter = Meter(count, child_pid)
        meter.start()
        start = time.perf_counter()
        windowed(submit, wait, value, count, WINDOW, meter.latencies)
        return meter.figures(time.perf_counter() - start)
    share = count // threads
    meter = Meter(share * threads, child_pid)
    barrier = threading.Barrier(threads + 1)
    per_thread: list[list[float]] = [[] for _ in range(threads)]

    def caller(latencies: list[float]) -> None:
        barrier.wait()
        windowed(submit, wait, value, share, WINDOW // threads, latencies)

    workers = [threading.Thread(target=caller, args=(mine,)) for mine in per_thread]
    for worker in workers:
        worker.start()
    meter.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - start
    for latencies in per_thread:
        meter.latencies.extend(latencies)
    return meter.figures(seconds)


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


def one_route_submit(connection: Any) -> Callable[..., Any]:
    """``submit`` of a pool's ``Dispatcher`` whose one route is ``connection``: a pool's
    request path with no actor and no child (``pool_cost.py --part path``,
    ``instructions.py parent pool``)."""
    from juicectl.pool._dispatch import Dispatcher, Route

    dispatcher = Dispatcher(
        "bench", max_per_worker=64, max_queued=1024, least_loaded=True,
        recycle_after_calls=None, default_timeout=None, tell=lambda message: None,
    )
    dispatcher.publish((Route(0, "bench.w1", connection, dispatcher),), (0,), can_grow=False)
    return dispatcher.submit
