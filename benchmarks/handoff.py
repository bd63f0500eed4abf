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
  the caller and by a reader thread: what the child runtime adds, with no parent-side Python.

The gaps between the lines say where a juicectl round trip goes before any of its own
parent-side code runs.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(argv: list[str], threaded: bool, count: int) -> tuple[float, float]:
    """Round trips per second and parent CPU seconds per round trip."""
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                             cwd=ROOT)
    assert child.stdin is not None and child.stdout is not None
    write_fd, read_fd = child.stdin.fileno(), child.stdout.fileno()
    waiting: list[object] = []

    def reader() -> None:
        while os.read(read_fd, 65536):
            waiting.pop().release()  # type: ignore[attr-defined]

    if threaded:
        threading.Thread(target=reader, daemon=True).start()

        def round_trip() -> None:
            lock = allocate_lock()
            lock.acquire()
            waiting.append(lock)
            os.write(write_fd, BOX)
            lock.acquire()
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
        ("cat, read by the caller", ["cat"], False),
        ("python cat, read by the caller", python_cat, False),
        ("python cat, read by a reader thread", python_cat, True),
        ("codec echo, read by the caller", [sys.executable, "-c", CODEC_ECHO], False),
        ("juicectl child, read by the caller", juice_child, False),
        ("juicectl child, read by a reader thread", juice_child, True),
    ]
    print("| round trip | per second | us each | parent CPU us |")
    print("|---|---:|---:|---:|")
    for name, argv, threaded in cases:
        rate, cpu = measure(argv, threaded, args.count)
        print(f"| {name} | {rate:,.0f} | {1e6 / rate:.1f} | {cpu * 1e6:.1f} |")


if __name__ == "__main__":
    main()
