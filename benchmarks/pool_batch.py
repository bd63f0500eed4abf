#!/usr/bin/env python3
"""A batch sent the moment a pool starts: how long it takes, and how it is split.

    .venv/bin/python benchmarks/pool_batch.py [COUNT] [MS] [ROUNDS]

Each round starts a ``ProcessPool`` of two workers and, at once (before they are ready),
sends ``COUNT`` tasks (40 by default) that each sleep ``MS`` milliseconds in a one-at-a-time
worker (20 by default); it prints the seconds from ``start()`` to the last answer and how many
tasks each worker process ran, then the median over ``ROUNDS`` (5 by default). Two workers
cannot both be ready at the same instant: this is what the pool does with the requests it
holds while the second one is still on its way (``docs/pools.md``, "While a worker is on its
way"). A sleep, not CPU work, so that the figure is the dispatch's and not the machine's.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from benchmarks._common import ROOT
from benchmarks.pool_workload import Sleep
from benchmarks.pools import WORKER
from juicectl import ProcessPool


def one_round(count: int, ms: int) -> tuple[float, list[int]]:
    """Seconds from start() to the last answer, and the tasks each worker process ran."""
    started = time.perf_counter()
    with ProcessPool.start(WORKER, size=2, cwd=str(ROOT)) as pool:
        futures = [pool.call(Sleep, ms=ms) for _ in range(count)]
        ran = Counter(future.get(timeout=60)["pid"] for future in futures)
        elapsed = time.perf_counter() - started
    return elapsed, sorted(ran.values(), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="A batch sent the moment a pool starts.")
    parser.add_argument("count", nargs="?", type=int, default=40, help="tasks (40)")
    parser.add_argument("ms", nargs="?", type=int, default=20, help="each task's sleep (20)")
    parser.add_argument("rounds", nargs="?", type=int, default=5, help="rounds (5)")
    args = parser.parse_args()
    for name in ("count", "ms", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"{name.upper()} must be at least 1, not {getattr(args, name)}")
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # stdout carries results
    )
    seconds = []
    for number in range(1, args.rounds + 1):
        elapsed, split = one_round(args.count, args.ms)
        seconds.append(elapsed)
        print(f"round {number}: {elapsed:.3f} s; tasks per worker {split}")
    print(f"{args.count} tasks of {args.ms} ms, 2 workers, from start(): median "
          f"{statistics.median(seconds):.3f} s ({args.count * args.ms / 1000:.2f} s of work)")


if __name__ == "__main__":
    main()
