#!/usr/bin/env python3
"""What a ``ProcessPool`` adds to a request, against one controller's connection alone.

    .venv/bin/python benchmarks/pool_cost.py [--part path|live|both] [--count N] [--repeat R]
                                             [--workers W] [--dispatch D]

``path``: microseconds of Python per request with no pipes and no threads, as
``path_cost.py`` measures the connection: a real ``Connection`` whose write goes nowhere, its
answer fed back with ``data_received()``, then ``get()``; once called on the connection, once
through a pool's ``Dispatcher`` with that connection as its one route. The best of
``--repeat``: on a shared machine the minimum is what the code costs.

``live``: echo tasks, 64 outstanding: through one ``ProcessController``'s connection, then
through a ``ProcessPool`` of ``--workers`` workers (one by default; ``--dispatch`` as the
pool's ``dispatch``), alternating ``--repeat`` times; requests per second, and per request the
parent's CPU (``os.times()``: every thread of the parent, the readers' included), the
children's CPU and how often they slept waiting for input (their voluntary context switches,
all children together), medians. A CPU figure holds up on a busy machine far better than a
rate does.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import timeit
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from benchmarks._common import ROOT, SMALL, WINDOW, one_route_submit
from benchmarks.pools import ready_pool
from benchmarks.workload import Echo
from juicectl import ProcessController
from juicectl.connection import Connection
from juicectl.juice import answer_bytes

WORKER = [sys.executable, "-m", "juicectl.child", "benchmarks.workload:EchoWorker"]


def _one_request(through_pool: bool) -> Callable[[], None]:
    """One request and its answer, on a connection that writes nowhere."""
    connection = Connection(lambda data: None, pid=0, generation=1, name="bench")
    front = answer_bytes("0", Echo.make_response({"value": SMALL}))
    front = front[: front.rindex(b"-Answer: 0")]
    tags = (format(i, "x").encode() for i in range(1, 1 << 62))
    receive = connection.data_received
    arguments = {"value": SMALL}
    if through_pool:
        submit = one_route_submit(connection)

        def one() -> None:
            future = submit(Echo, arguments, None, None)
            receive(b"%s-Answer: %s\r\n\r\n" % (front, next(tags)))
            future.get()

        return one
    call = connection.call_with

    def one_alone() -> None:
        future = call(Echo, arguments)
        receive(b"%s-Answer: %s\r\n\r\n" % (front, next(tags)))
        future.get()

    return one_alone


def path(count: int, repeat: int) -> None:
    """Print the pool's and the connection's microseconds per request, best of ``repeat``."""
    best = {}
    for name, through_pool in (("connection", False), ("pool", True)):
        best[name] = min(timeit.repeat(_one_request(through_pool), number=count,
                                       repeat=repeat)) / count
    added = best["pool"] - best["connection"]
    print(f"path: connection {best['connection'] * 1e6:.2f} us, pool {best['pool'] * 1e6:.2f} us"
          f" per request; the pool adds {added * 1e6:.2f} us (best of {repeat})")


def _windowed(call: Callable[[], Any], count: int) -> None:
    pending: deque[Any] = deque()
    for _ in range(count):
        pending.append(call())
        if len(pending) >= WINDOW:
            pending.popleft().get(timeout=30)
    while pending:
        pending.popleft().get(timeout=30)


def _child(pid: int) -> tuple[float, int]:
    """The child's CPU seconds (schedstat, in nanoseconds) and how often it slept."""
    with open(f"/proc/{pid}/schedstat") as stat:
        cpu = int(stat.read().split()[0]) / 1e9
    with open(f"/proc/{pid}/status") as status:
        sleeps = next(int(line.split()[1]) for line in status
                      if line.startswith("voluntary_ctxt_switches"))
    return cpu, sleeps


def _children(pids: list[int]) -> tuple[float, int]:
    """The children's CPU seconds and how often they slept, all together."""
    figures = [_child(pid) for pid in pids]
    return sum(cpu for cpu, _ in figures), sum(sleeps for _, sleeps in figures)


def _measure(call: Callable[[], Any], count: int, pids: list[int]) -> tuple[float, ...]:
    """Requests per second, and per request: parent CPU seconds, the children's CPU seconds,
    and how often they slept waiting for input."""
    before, child_before = os.times(), _children(pids)
    _windowed(call, count)
    after, child_after = os.times(), _children(pids)
    cpu = (after.user - before.user) + (after.system - before.system)
    return (count / (after.elapsed - before.elapsed), cpu / count,
            (child_after[0] - child_before[0]) / count,
            (child_after[1] - child_before[1]) / count)


def live(count: int, repeat: int, workers: int, dispatch: str) -> None:
    """Print the rates and CPU per request of a controller and a pool of ``workers``."""
    figures: dict[str, list[tuple[float, ...]]] = {"controller": [], "pool": []}
    with ProcessController.start(WORKER, cwd=str(ROOT)) as controller, \
            ready_pool(workers, WORKER, dispatch=dispatch, cwd=str(ROOT)) as pool:
        connection = controller.get_process().get(timeout=30)
        calls: dict[str, Callable[[], Any]] = {
            "controller": lambda: connection.call(Echo, value=SMALL),
            "pool": lambda: pool.call(Echo, value=SMALL),
        }
        for call in calls.values():
            _windowed(call, 2000)  # warm
        pids = {"controller": [connection.pid],
                "pool": [worker["pid"] for worker in pool.stats()["workers"]]}
        for _ in range(repeat):
            for name, call in calls.items():
                figures[name].append(_measure(call, count, pids[name]))
    medians = {
        name: tuple(statistics.median(run[index] for run in runs) for index in range(4))
        for name, runs in figures.items()
    }
    for name, (rate, cpu, child_cpu, sleeps) in medians.items():
        label = f"pool x{workers} ({dispatch})" if name == "pool" else name
        print(f"live {label}: {rate:,.0f} req/s; per request: parent CPU {cpu * 1e6:.1f} us, "
              f"child CPU {child_cpu * 1e6:.1f} us, child sleeps {sleeps:.2f}")
    print(f"live pool/controller: throughput {medians['pool'][0] / medians['controller'][0]:.2f}x,"
          f" CPU {medians['pool'][1] / medians['controller'][1]:.2f}x (medians of {repeat}, "
          f"{WINDOW} outstanding, load average {os.getloadavg()[0]:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", default="both", choices=["path", "live", "both"])
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="the pool's size (live)")
    parser.add_argument("--dispatch", default="least_loaded",
                        choices=["least_loaded", "round_robin"], help="the pool's (live)")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # stdout carries results
    )
    if args.part in ("path", "both"):
        path(args.count or 500, args.repeat or 100)
    if args.part in ("live", "both"):
        live(args.count or 20000, args.repeat or 7, args.workers, args.dispatch)


if __name__ == "__main__":
    main()
