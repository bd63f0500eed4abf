#!/usr/bin/env python3
"""What a thread pays in CPU to wake up: the same small Python work, run hot and after a sleep.

    .venv/bin/python benchmarks/wake_cost.py [ROUNDS]

A caller waiting on slow tasks (a pool of CPU-bound workers) sleeps between answers and wakes
for each one. This prints the CPU time (``/proc/thread-self/schedstat``, nanoseconds, this
thread only) of one round of a fixed piece of Python, about a request's worth of dict and
string work, when run back to back, and when each round follows a sleep in ``poll()`` of
0.2, 1 and 5 ms. The sleep itself is not counted as CPU; what grows is the work, run on a
CPU woken from idle with cold caches. Linux only (schedstat).
"""

from __future__ import annotations

import os
import select
import sys
import time


def work() -> dict[int, str]:
    """About a request's worth of small Python work."""
    table: dict[int, str] = {}
    for index in range(300):
        table[index % 17] = str(index)
    return table


def thread_cpu() -> float:
    """This thread's CPU seconds."""
    with open("/proc/thread-self/schedstat", encoding="ascii") as stat:
        return int(stat.read().split()[0]) / 1e9


def per_round(rounds: int, sleep: float) -> float:
    """CPU seconds per round of ``work()``, each after ``sleep`` seconds in ``poll()``."""
    read_end, write_end = os.pipe()
    poller = select.poll()
    poller.register(read_end, select.POLLIN)  # never readable: poll() sleeps its timeout
    try:
        start = thread_cpu()
        for _ in range(rounds):
            if sleep:
                poller.poll(sleep * 1000.0)
            work()
        return (thread_cpu() - start) / rounds
    finally:
        os.close(read_end)
        os.close(write_end)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    for _ in range(100):
        work()
    hot = per_round(rounds * 5, 0.0)
    print(f"load average {os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"hot (back to back):  {hot * 1e6:7.1f} us per round")
    for sleep in (0.0002, 0.001, 0.005):
        cost = per_round(rounds, sleep)
        print(f"after {sleep * 1000:3.1f} ms asleep:  {cost * 1e6:7.1f} us per round "
              f"({cost / hot:.1f}x hot)")


if __name__ == "__main__":
    main()
