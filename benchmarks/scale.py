#!/usr/bin/env python3
"""Many controllers at once: 50 controllers, each with its own child, on this machine.

    .venv/bin/python benchmarks/scale.py [--controllers N] [--seconds S] [--quick]
                                         [--busy-poll SECONDS]
    .venv/bin/python benchmarks/run.py --only scale

Reports the time from starting them all to every child answering, the threads and memory
each controller adds at rest (parent threads and RSS, child RSS), and the requests per
second across all of them: one caller thread per controller sending one request at a time,
then one caller thread keeping 4 requests in flight on every controller. ``--busy-poll`` sets
the busy-poll budget of the parents and the children (0: off).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from benchmarks._common import ROOT, SMALL, rss_kib, thread_count
from benchmarks.workload import Echo
from juicectl import Connection, ProcessController

ARGV = [sys.executable, "-m", "juicectl.child", "benchmarks.workload:EchoWorker"]


def _sequential_callers(connections: list[Connection], seconds: float) -> float:
    """One thread per connection, one request at a time; requests per second in all."""
    counts = [0] * len(connections)
    stop = threading.Event()
    barrier = threading.Barrier(len(connections) + 1)

    def caller(index: int, connection: Connection) -> None:
        barrier.wait()
        done = 0
        while not stop.is_set():
            connection.call(Echo, value=SMALL).get(timeout=30)
            done += 1
        counts[index] = done

    threads = [threading.Thread(target=caller, args=(i, c)) for i, c in enumerate(connections)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def _windowed_caller(connections: list[Connection], seconds: float, window: int) -> float:
    """One thread keeping ``window`` requests in flight on every connection."""
    pending: deque[Any] = deque()
    for connection in connections:
        for _ in range(window):
            pending.append((connection, connection.call(Echo, value=SMALL)))
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        connection, future = pending.popleft()
        future.get(timeout=30)
        done += 1
        pending.append((connection, connection.call(Echo, value=SMALL)))
    elapsed = time.perf_counter() - start
    for _, future in pending:
        future.get(timeout=30)
    return done / elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--controllers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0, help="per load phase")
    parser.add_argument("--quick", action="store_true", help="2-second load phases")
    parser.add_argument("--busy-poll", type=float, default=None, metavar="SECONDS")
    args = parser.parse_args(argv)
    argv_child, options = list(ARGV), {}
    if args.busy_poll is not None:
        argv_child.append(f"--busy-poll={args.busy_poll}")
        options["busy_poll"] = args.busy_poll
    seconds = 2.0 if args.quick else args.seconds
    count = args.controllers
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # stdout carries results
    )
    # Warm the imports and the shared timer thread, so that the figures are per controller.
    with ProcessController.start(ARGV, cwd=str(ROOT)) as warm:
        warm.get_process().get(timeout=30).call(Echo, value=SMALL).get(timeout=30)
    time.sleep(0.3)
    threads_before, rss_before = thread_count(), rss_kib()

    start = time.perf_counter()
    controllers = [
        ProcessController.start(
            argv_child, cwd=str(ROOT), name=f"scale-{i}", startup_timeout=120, **options
        )
        for i in range(count)
    ]
    futures = [controller.get_process() for controller in controllers]
    connections: list[Connection] = [future.get(timeout=180) for future in futures]
    all_ready = time.perf_counter() - start
    first_answers = [c.call(Echo, value=SMALL) for c in connections]
    for answer in first_answers:
        answer.get(timeout=60)
    all_answered = time.perf_counter() - start

    try:
        time.sleep(1.0)  # at rest
        threads = thread_count() - threads_before
        parent_rss = rss_kib() - rss_before
        child_rss = [rss_kib(c.pid) for c in connections]
        child_threads = [thread_count(c.pid) for c in connections]
        sequential = _sequential_callers(connections, seconds)
        windowed = _windowed_caller(connections, seconds, 4)
        threads_after_load = thread_count() - threads_before
    finally:
        stop_start = time.perf_counter()
        for controller in controllers:
            controller.stop_process()
        for controller in controllers:
            controller.close()
        stopped = time.perf_counter() - stop_start

    figures = {
        "controllers": count,
        "all_ready_s": all_ready,
        "all_answered_s": all_answered,
        "threads_per_controller": threads / count,
        "threads_after_load_per_controller": threads_after_load / count,
        "parent_rss_per_controller_kib": parent_rss / count,
        "child_rss_median_kib": statistics.median(child_rss),
        "child_threads": max(child_threads),
        "sequential_rps": sequential,
        "windowed_rps": windowed,
        "close_all_s": stopped,
    }
    print()
    print(f"| {count} controllers, {count} children | |")
    print("|---|---:|")
    print(f"| start all -> every child ready | {all_ready:.2f} s |")
    print(f"| start all -> every child answered an Echo | {all_answered:.2f} s |")
    print(f"| parent threads per controller at rest | {threads / count:.2f} |")
    print(f"| parent threads per controller after load | {threads_after_load / count:.2f} |")
    print(f"| parent RSS per controller at rest | {parent_rss / count:.0f} KiB |")
    print(f"| child RSS (median) | {statistics.median(child_rss) / 1024:.1f} MiB |")
    print(f"| child threads | {max(child_threads)} |")
    print(f"| requests/s, one caller thread per controller, 1 in flight each | "
          f"{sequential:,.0f} |")
    print(f"| requests/s, one caller thread, 4 in flight on each controller | "
          f"{windowed:,.0f} |")
    print(f"| stop and close all | {stopped:.2f} s |")
    return figures


if __name__ == "__main__":
    main()
