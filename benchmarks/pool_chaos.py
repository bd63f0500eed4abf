#!/usr/bin/env python3
"""A pool under load while its workers are SIGKILLed at random.

Run on demand (never collected by pytest)::

    .venv/bin/python benchmarks/pool_chaos.py --duration 60 --callers 8 --size 2

Caller threads send bursts of echoes (one in five with a key) through one ``ProcessPool``
while a killer SIGKILLs a ready worker every ``--kill-min`` to ``--kill-max`` seconds; the
restart policy restarts at once and never gives up, so every kill is met by a restart. Then
the pool is closed (with ``--close-under-fire``, while the callers and the killer are still at
work). Prints the figures and exits with status 1 if a promise broke: a wrong answer, a
request that hung (no outcome within 30 s), an error other than ``ProcessUnavailable`` (or
``ControllerClosed`` once closed), more requests failed than workers killed (a worker runs
one request at a time: only that one may fail, the rest go elsewhere), or a worker process
or a juicectl thread left after ``close()``.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from benchmarks._common import ROOT
from benchmarks.pools import WORKER
from benchmarks.workload import Echo
from juicectl import (
    ControllerClosed,
    ProcessPool,
    ProcessUnavailable,
    RestartPolicy,
    TooManyRequests,
)
from tests.hostile.harness import pid_alive as alive

#: Seconds a request may take before it counts as hung.
HUNG = 30.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--callers", type=int, default=8, help="caller threads (default 8)")
    parser.add_argument("--size", type=int, default=2, help="workers (default 2)")
    parser.add_argument("--kill-min", type=float, default=0.05, help="seconds between kills, min")
    parser.add_argument("--kill-max", type=float, default=0.3, help="seconds between kills, max")
    parser.add_argument("--max-burst", type=int, default=32, help="requests per burst (32)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--close-under-fire", action="store_true",
                        help="close() while callers and killer are still at work")
    args = parser.parse_args(argv)
    for name in ("duration", "callers", "size", "kill_min", "kill_max", "max_burst"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be above 0, not {getattr(args, name)}")
    if args.kill_max < args.kill_min:
        parser.error(f"--kill-max ({args.kill_max}) is below --kill-min ({args.kill_min})")
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # stdout carries results
    )
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    threads_before = set(threading.enumerate())
    pool = ProcessPool.start(
        WORKER, size=args.size, name="chaos", cwd=str(ROOT),
        restart=RestartPolicy(initial_delay=0.01, factor=1.0, jitter=0.0, max_restarts=10**9),
    )
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    closed = threading.Event()
    kills = [0]
    pids: set[int] = set()

    def note(outcome: str, problem: str | None = None) -> None:
        with lock:
            outcomes[outcome] += 1
            if problem is not None and len(problems) < 10:
                problems.append(problem)

    def caller(number: int) -> None:
        rng = random.Random(seed + number)
        sent = 0
        while not stop.is_set():
            burst = []
            for _ in range(rng.randint(1, args.max_burst)):
                value = f"{number}-{sent}"
                sent += 1
                key = value if rng.random() < 0.2 else None
                try:
                    burst.append((value, pool.call(Echo, value=value, key=key)))
                except ControllerClosed:
                    note("refused, closed" if closed.is_set() else "refused, not closed",
                         None if closed.is_set() else "call() said closed before close()")
                    return
                except (ProcessUnavailable, TooManyRequests) as error:
                    note(f"refused, {type(error).__name__}")
            for value, future in burst:
                try:
                    answer = future.get(timeout=HUNG)
                except ProcessUnavailable:
                    note("failed, ProcessUnavailable")
                except ControllerClosed:
                    note("failed, closed" if closed.is_set() else "failed, closed too soon",
                         None if closed.is_set() else "ControllerClosed before close()")
                except Exception as error:  # everything else is a broken promise
                    hung = type(error).__name__ == "Timeout"
                    note("hung" if hung else "other error",
                         f"{value}: {'no outcome within 30 s' if hung else repr(error)}")
                else:
                    if answer == {"value": value}:
                        note("answered")
                    else:
                        note("wrong answer", f"{value}: answered {answer!r}")

    def killer() -> None:
        rng = random.Random(seed)
        while not stop.wait(rng.uniform(args.kill_min, args.kill_max)):
            ready = [w["pid"] for w in pool.stats().get("workers", ())
                     if w["state"] == "ready" and w["pid"]]
            if not ready:
                continue
            victim = rng.choice(ready)
            with lock:
                pids.add(victim)
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                continue
            kills[0] += 1

    workers = [threading.Thread(target=caller, args=(n,), name=f"caller-{n}")
               for n in range(args.callers)]
    workers.append(threading.Thread(target=killer, name="killer"))
    started = time.monotonic()
    for thread in workers:
        thread.start()
    time.sleep(args.duration)
    stats = pool.stats()
    pids.update(w["pid"] for w in stats.get("workers", ()) if w["pid"])
    if args.close_under_fire:
        closed.set()
        close_started = time.monotonic()
        pool.close()
        close_seconds = time.monotonic() - close_started
    stop.set()
    for thread in workers:
        thread.join(HUNG + 30)
        if thread.is_alive():
            problems.append(f"{thread.name} still running {HUNG + 30:.0f} s after the stop")
    if not args.close_under_fire:
        stats = pool.stats()
        closed.set()
        close_started = time.monotonic()
        pool.close()
        close_seconds = time.monotonic() - close_started
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = sorted(pid for pid in pids if alive(pid))
    if left:
        problems.append(f"worker processes left after close(): {left}")
    ours = [t.name for t in set(threading.enumerate()) - threads_before
            if t.is_alive() and t.name.startswith("juicectl") and t.name != "juicectl-timer"]
    if ours:
        problems.append(f"juicectl threads left after close(): {sorted(ours)}")
    failed = outcomes["failed, ProcessUnavailable"]
    if failed > kills[0]:
        problems.append(f"{failed} requests failed for {kills[0]} workers killed")
    for outcome in ("wrong answer", "hung", "other error", "refused, not closed",
                    "failed, closed too soon"):
        if outcomes[outcome]:
            problems.append(f"{outcomes[outcome]} x {outcome}")

    print(f"{'seed':28} {seed}")
    print(f"{'seconds':28} {elapsed:.1f}")
    print(f"{'workers killed':28} {kills[0]}")
    for outcome, count in sorted(outcomes.items()):
        print(f"{outcome:28} {count}")
    print(f"{'answered per second':28} {outcomes['answered'] / elapsed:.0f}")
    print(f"{'re-sent by the pool':28} {stats.get('resent', 'n/a')}")
    print(f"{'close() took':28} {close_seconds:.2f} s")
    for problem in problems:
        print(f"PROBLEM                      {problem}")
    print(f"{'RESULT':28} {'every promise held' if not problems else 'a promise broke'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
