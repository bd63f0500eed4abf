#!/usr/bin/env python3
"""The floor: one Juice box written to ``cat`` with one ``os.write`` and read back.

    .venv/bin/python benchmarks/drive_cat.py SCENARIO COUNT [--python]

No parsing, no futures, no threads: the cost of the pipes and two process wake-ups per
round trip, which no implementation can beat. Only the sequential scenarios make sense.

``--python`` puts a Python process in place of ``cat``, copying its input to its output with
``os.read``/``os.write`` and nothing else: the floor for any child written in Python.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import BIG, SMALL, parse_args, report, sequential
from benchmarks.workload import Echo
from juicectl.juice import request_bytes

PYTHON_CAT = """
import os
while True:
    data = os.read(0, 65536)
    if not data:
        break
    os.write(1, data)
"""


def main() -> None:
    scenario, count, flags = parse_args()
    if scenario not in ("seq", "big"):
        sys.exit(f"the cat floor has no {scenario!r} scenario")
    value = SMALL if scenario == "seq" else BIG
    box = request_bytes(Echo, "1", Echo.make_arguments({"value": value}))
    size = len(box)
    argv = [sys.executable, "-c", PYTHON_CAT] if "--python" in flags else ["cat"]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert child.stdin is not None and child.stdout is not None
    write_fd, read_fd = child.stdin.fileno(), child.stdout.fileno()

    def round_trip(_: str) -> str:
        os.write(write_fd, box)
        got = len(os.read(read_fd, 65536))
        while got < size:  # a large box may come back in pieces
            got += len(os.read(read_fd, 65536))
        return ""

    try:
        report(scenario, **sequential(round_trip, value, count, child.pid), box_bytes=size)
    finally:
        child.stdin.close()
        child.wait()


if __name__ == "__main__":
    main()
