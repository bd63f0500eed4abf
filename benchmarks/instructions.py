#!/usr/bin/env python3
"""Instructions per small request on each side, counted by callgrind: repeatable on a busy
machine, whatever else runs.

    .venv/bin/python benchmarks/instructions.py [parent|child|timeout ...]

The paths are ``path_cost.py``'s (no pipes, no threads): the parent's is a real
``Connection`` whose write goes nowhere (``call()``, ``data_received()`` of the answer,
``get()``), ``timeout`` the same with a request timeout; the child's is its runtime's work for
one request. Each figure runs the path under ``valgrind --tool=callgrind`` twice, for
``SHORT`` and ``LONG`` requests, and divides the difference by ``LONG - SHORT``, so that
start-up and imports cancel out. About half a minute per figure; needs valgrind.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import ROOT, SMALL

SHORT, LONG = 200, 1200
SIDES = ("parent", "timeout", "child")


def run(side: str, count: int) -> None:
    """Send ``count`` small requests through one side's path (what callgrind counts)."""
    from benchmarks.workload import Echo, EchoWorker
    from juicectl.connection import Connection
    from juicectl.juice import BoxParser, Responders, answer_bytes, request_bytes

    if side == "child":
        responders = Responders(EchoWorker())
        parser = BoxParser()
        data = request_bytes(Echo, "1", Echo.make_arguments({"value": SMALL}))
        for _ in range(count):
            for box in parser.feed(data):
                responders.answer(box["_command"], box.get("_ask"), box)
        return
    connection = Connection(lambda data: None, pid=0, generation=1, name="bench")
    front = answer_bytes("0", Echo.make_response({"value": SMALL}))
    front = front[: front.rindex(b"-Answer: 0")]
    timeout = 30.0 if side == "timeout" else None
    for tag in range(1, count + 1):
        future = connection.call(Echo, value=SMALL, timeout=timeout)
        connection.data_received(b"%s-Answer: %x\r\n\r\n" % (front, tag))
        future.get()


def count_instructions(side: str, count: int) -> int:
    """Instructions callgrind counts for a process running ``count`` requests of ``side``."""
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, __file__, "--run", side, str(count)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind: {done.stderr[-500:]}")
    return int(found.group(1))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--run"]:
        run(argv[1], int(argv[2]))
        return
    sides = argv or list(SIDES)
    unknown = [side for side in sides if side not in SIDES]
    if unknown:
        sys.exit(f"unknown side(s) {', '.join(unknown)}: choose from {', '.join(SIDES)}")
    for side in sides:
        per_request = (count_instructions(side, LONG) - count_instructions(side, SHORT)) / (
            LONG - SHORT
        )
        print(f"{side}: {per_request:,.0f} instructions per request", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
