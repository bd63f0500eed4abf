#!/usr/bin/env python3
"""How a pool of two splits work of each size, and how fast it goes, by requests outstanding.

    .venv/bin/python benchmarks/pool_split.py [--windows 1,2,8,64] [--quick]

For tasks of four sizes (``Burn`` of ``BURN`` iterations, about 9 ms here; of a twentieth; of a
two-hundredth; and an echo), each with 1, 2, 8 and 64 requests kept outstanding by one caller,
it prints the tasks per second and how many tasks each of the two workers ran. The least
loaded dispatch (``docs/pools.md``, "Dispatch") gives a request to the first worker while the
workers' answers wait to be read (unless it stalls), else to an idle worker, else to the least
loaded: small tasks should stay on one worker while this side is the slower, and CPU-bound
ones be split evenly. A fresh pool for each line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from benchmarks._common import ROOT, SMALL
from benchmarks.pool_workload import BURN, Burn
from benchmarks.pools import WORKER
from benchmarks.workload import Echo
from juicectl import ProcessPool

#: (name, command, arguments, tasks per line).
WORKLOADS: list[tuple[str, Any, dict[str, Any], int]] = [
    ("burn", Burn, {"n": BURN}, 200),
    ("burn / 20", Burn, {"n": BURN // 20}, 2_000),
    ("burn / 200", Burn, {"n": BURN // 200}, 10_000),
    ("echo", Echo, {"value": SMALL}, 20_000),
]


def one_line(command: Any, arguments: dict[str, Any], count: int, window: int
             ) -> tuple[float, list[int]]:
    """Tasks per second with ``window`` outstanding, and the tasks each worker ran."""
    with ProcessPool.start(WORKER, size=2, cwd=str(ROOT)) as pool:
        deadline = time.monotonic() + 60
        while pool.stats()["size"] < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the pool's workers were not ready within 60 s")
            time.sleep(0.01)
        before = [worker["calls"] for worker in pool.stats()["workers"]]
        pending: deque[Any] = deque()
        sent = 0
        started = time.perf_counter()
        while sent < count or pending:
            while sent < count and len(pending) < window:
                pending.append(pool.call(command, **arguments))
                sent += 1
            pending.popleft().get(timeout=60)
        rate = count / (time.perf_counter() - started)
        after = [worker["calls"] for worker in pool.stats()["workers"]]
    return rate, [a - b for a, b in zip(after, before, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description="How a pool of two splits work.")
    parser.add_argument("--windows", default="1,2,8,64",
                        help="requests outstanding, comma-separated (1,2,8,64)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the tasks")
    args = parser.parse_args()
    try:
        windows = [int(word) for word in args.windows.split(",")]
    except ValueError:
        parser.error(f"--windows must be whole numbers separated by commas, not {args.windows!r}")
    if any(window < 1 for window in windows):
        parser.error(f"--windows must each be at least 1, not {args.windows!r}")
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # stdout carries results
    )
    print(f"{'task':12} {'outstanding':>11} {'tasks/s':>9}  per worker")
    for name, command, arguments, count in WORKLOADS:
        count = max(20, count // 10) if args.quick else count
        for window in windows:
            rate, split = one_line(command, arguments, count, window)
            print(f"{name:12} {window:11d} {rate:9.0f}  {split}", flush=True)


if __name__ == "__main__":
    main()
