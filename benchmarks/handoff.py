#!/usr/bin/env python3
"""What a round trip costs before juicectl's parent-side code: pipes, wake-ups, the child.

    .venv/bin/python benchmarks/handoff.py [--count N]

Parents write one small Juice box and wait for what comes back:

* ``cat`` and a Python copy loop (``python cat``), read back on the caller's own thread:
  the floors of ``run.py``;
* the same Python copy loop, read by a second thread that hands each answer to the caller
  through a lock (one thread hand-off and the GIL), as a design with only a reader thread
  pays on every request (juicectl's callers read their own answers when nobody else does);
* a minimal Python child that parses each box with juicectl's codec and writes the answer
  (``codec echo``): what parsing and answering cost, with no runtime around them;
* juicectl's own child (``python -m juicectl.child``), parsing and answering the box, read by
  the caller and by a reader thread: what the child runtime adds, with no parent-side Python;
* the Python copy loop and juicectl's child with busy polling on both sides: the child polls
  its stdin for up to 100 µs before it reads, the caller polls for the answer as long before
  it reads (``--busy-poll``, juicectl's default budget): what wake-ups cost.

Without busy polling, juicectl's child runs with ``--busy-poll=0``, so that every line but the
last two sleeps in ``read()`` on both sides, as ``cat`` does.

The gaps between the lines say where a juicectl round trip goes before any of its own
parent-side code runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import subprocess
import sys
import threading
import time
from _thread import allocate_lock
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import ROOT, WARMUP
from benchmarks.drive_cat import PYTHON_CAT
from benchmarks.workload import Echo
from juicectl.juice import request_bytes

BOX = request_bytes(Echo, "1", Echo.make_arguments({"value": "hello, juice world"}))


CODEC_ECHO = """
import os
from juicectl.juice import Box, BoxParser, answer_bytes
parser = BoxParser()
while True:
    data = os.read(0, 65536)
    if not data:
        break
    os.write(1, b"".join(
        answer_bytes(box["_ask"], Box(value=box["value"])) for box in parser.feed(data)
    ))
"""


#: The Python copy loop, polling its input for up to 100 µs before each read.
POLLING_CAT = """
import os, select, time
poller = select.poll()
poller.register(0, select.POLLIN)
while True:
    end = time.perf_counter() + 0.0001
    while not poller.poll(0) and time.perf_counter() < end:
        pass
    data = os.read(0, 65536)
    if not data:
        break
    os.write(1, data)
"""
SPIN = 0.0001


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(argv: list[str], reader: str, count: int) -> tuple[float, float]:
    """Round trips per second and parent CPU seconds per round trip; ``reader`` is
    ``"caller"``, ``"thread"`` or ``"polling caller"``."""
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                             cwd=ROOT)
    assert child.stdin is not None and child.stdout is not None
    write_fd, read_fd = child.stdin.fileno(), child.stdout.fileno()
    waiting: list[object] = []

    def read_all() -> None:
        while os.read(read_fd, 65536):
            waiting.pop().release()  # type: ignore[attr-defined]

    if reader == "thread":
        threading.Thread(target=read_all, daemon=True).start()

        def round_trip() -> None:
            lock = allocate_lock()
            lock.acquire()
            waiting.append(lock)
            os.write(write_fd, BOX)
            lock.acquire()
    elif reader == "polling caller":
        poller = select.poll()
        poller.register(read_fd, select.POLLIN)
        poll, clock = poller.poll, time.perf_counter

        def round_trip() -> None:
            os.write(write_fd, BOX)
            end = clock() + SPIN
            while not poll(0) and clock() < end:
                pass
            os.read(read_fd, 65536)
    else:

        def round_trip() -> None:
            os.write(write_fd, BOX)
            os.read(read_fd, 65536)

    try:
        for _ in range(WARMUP):
            round_trip()
        cpu, start = _cpu(), time.perf_counter()
        for _ in range(count):
            round_trip()
        elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
    finally:
        child.stdin.close()
        child.wait()
    return count / elapsed, cpu / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    python_cat = [sys.executable, "-c", PYTHON_CAT]
    juice_child = [sys.executable, "-m", "juicectl.child", "benchmarks.workload:EchoWorker"]
    cases = [
        ("cat, read by the caller", ["cat"], "caller"),
        ("python cat, read by the caller", python_cat, "caller"),
        ("python cat, read by a reader thread", python_cat, "thread"),
        ("codec echo, read by the caller", [sys.executable, "-c", CODEC_ECHO], "caller"),
        ("juicectl child, read by the caller", [*juice_child, "--busy-poll=0"], "caller"),
        ("juicectl child, read by a reader thread", [*juice_child, "--busy-poll=0"], "thread"),
        ("python cat polling, read by a caller polling", [sys.executable, "-c", POLLING_CAT],
         "polling caller"),
        ("juicectl child polling, read by a caller polling", juice_child, "polling caller"),
    ]
    print("| round trip | per second | us each | parent CPU us |")
    print("|---|---:|---:|---:|")
    for name, argv, reader in cases:
        rate, cpu = measure(argv, reader, args.count)
        print(f"| {name} | {rate:,.0f} | {1e6 / rate:.1f} | {cpu * 1e6:.1f} |")


if __name__ == "__main__":
    main()
