#!/usr/bin/env python3
"""CPU time per request, parent and child, for juicectl alone: the figure to tune against.

    .venv/bin/python benchmarks/cost.py [--scenario seq|c64|big|big64] [--count N] [--repeat R]
                                        [--busy-poll SECONDS]

Wall-clock rates on a shared machine swing with everyone else's load; the CPU time each
process spends per request swings much less, so a change to the request path shows up here
even when the machine is busy. Reports the median of ``--repeat`` runs of each figure.
``--busy-poll`` sets the busy-poll budget of both sides (0: off); a spin is CPU time too.
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from benchmarks._common import BIG, ROOT, SMALL, WINDOW
from benchmarks.workload import Echo
from juicectl import ProcessController


def _child_cpu(pid: int) -> float:
    """CPU seconds of the child's main thread, in nanoseconds' resolution (schedstat)."""
    with open(f"/proc/{pid}/schedstat") as stat:
        return int(stat.read().split()[0]) / 1e9


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(connection: Any, scenario: str, count: int) -> None:
    if scenario in ("c64", "big64"):
        value = BIG if scenario == "big64" else SMALL
        pending: deque[Any] = deque()
        for _ in range(count):
            pending.append(connection.call(Echo, value=value))
            if len(pending) >= WINDOW:
                pending.popleft().get()
        while pending:
            pending.popleft().get()
        return
    value = BIG if scenario == "big" else SMALL
    for _ in range(count):
        connection.call(Echo, value=value).get()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", default="seq", choices=["seq", "c64", "big", "big64"])
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--busy-poll", type=float, default=None)
    args = parser.parse_args()
    count = args.count or {"seq": 10000, "c64": 30000, "big": 2000, "big64": 2000}[args.scenario]
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # stdout carries results
    )
    argv = [sys.executable, "-m", "juicectl.child", "benchmarks.workload:EchoWorker"]
    options: dict[str, Any] = {}
    if args.busy_poll is not None:
        argv.append(f"--busy-poll={args.busy_poll}")
        options["busy_poll"] = args.busy_poll
    rates, parents, children = [], [], []
    with ProcessController.start(argv, cwd=str(ROOT), **options) as controller:
        connection = controller.get_process().get(timeout=30)
        _run(connection, args.scenario, 1000)
        for _ in range(args.repeat):
            before, child_before = _own_cpu(), _child_cpu(connection.pid)
            start = time.perf_counter()
            _run(connection, args.scenario, count)
            wall = time.perf_counter() - start
            after, child_after = _own_cpu(), _child_cpu(connection.pid)
            rates.append(count / wall)
            parents.append((after - before) / count)
            children.append((child_after - child_before) / count)
    print(f"{args.scenario}: {statistics.median(rates):,.0f} req/s; CPU per request: parent "
          f"{statistics.median(parents) * 1e6:.1f} us, child "
          f"{statistics.median(children) * 1e6:.1f} us  (medians of {args.repeat})")


if __name__ == "__main__":
    main()
