#!/usr/bin/env python3
"""Baseline: ``concurrent.futures.ProcessPoolExecutor(max_workers=1)`` (see ``_common.py``).

    .venv/bin/python benchmarks/drive_pool.py SCENARIO COUNT

The worker function echoes its argument; the pool pickles calls and results over its pipes.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    BIG,
    SMALL,
    THREADS,
    WARMUP,
    concurrent_rate,
    median_ms,
    parse_args,
    report,
    rss_kib,
    sequential,
    thread_count,
)


def echo(value: str) -> str:
    """The work: none."""
    return value


def _result(future: Future[str]) -> str:
    return future.result()


def main() -> None:
    scenario, count, _ = parse_args()
    if scenario == "cold":
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            with ProcessPoolExecutor(max_workers=1) as pool:
                pool.submit(echo, SMALL).result()
                samples.append(time.perf_counter() - start)
        report("cold", median_ms(samples), samples_ms=[round(s * 1000, 2) for s in samples])
        return
    if scenario == "restart":
        # No supervisor: a broken pool is replaced by a new one.
        samples = []
        pool = ProcessPoolExecutor(max_workers=1)
        pool.submit(echo, SMALL).result()
        for _ in range(count):
            pid = next(iter(pool._processes))
            start = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            pool.shutdown(wait=True)
            pool = ProcessPoolExecutor(max_workers=1)
            pool.submit(echo, SMALL).result()
            samples.append(time.perf_counter() - start)
        pool.shutdown()
        report("restart", median_ms(samples), samples_ms=[round(s * 1000, 2) for s in samples])
        return
    threads_before, rss_before = thread_count(), rss_kib()
    with ProcessPoolExecutor(max_workers=1) as pool:
        if scenario == "rest":
            for _ in range(WARMUP):
                pool.submit(echo, SMALL).result()
            time.sleep(0.2)
            pid = next(iter(pool._processes))
            report("rest", thread_count() - threads_before,
                   parent_rss_delta_kib=rss_kib() - rss_before,
                   child_rss_kib=rss_kib(pid), child_threads=thread_count(pid))
        else:
            pool.submit(echo, SMALL).result()  # the worker process exists from here on
            pid = next(iter(pool._processes))
            if scenario in ("seq", "big"):
                value = SMALL if scenario == "seq" else BIG
                report(scenario, **sequential(lambda v: pool.submit(echo, v).result(), value,
                                              count, pid))
            else:
                threads = 1 if scenario == "c64" else THREADS
                report(scenario, **concurrent_rate(lambda v: pool.submit(echo, v), _result,
                                                   SMALL, count, threads, pid))


if __name__ == "__main__":
    main()
