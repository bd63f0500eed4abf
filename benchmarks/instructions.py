#!/usr/bin/env python3
"""Instructions per small request on each side, counted by callgrind: repeatable on a busy
machine, whatever else runs.

    .venv/bin/python benchmarks/instructions.py [--value-size N] [parent|timeout|pool|child ...]

The paths are ``path_cost.py``'s (no pipes, no threads): the parent's is a real
``Connection`` whose write goes nowhere (``call()``, ``data_received()`` of the answer,
``get()``), ``timeout`` the same with a request timeout, ``pool`` the same connection as the
one route of a pool's ``Dispatcher`` (``pool_cost.py --part path``); the child's is its
runtime's work for one request. Each figure runs the path under ``valgrind
--tool=callgrind`` twice, for ``SHORT`` and ``LONG`` requests, and divides the difference by
``LONG - SHORT``, so that start-up and imports cancel out. About half a minute per figure;
needs valgrind. ``--value-size N`` echoes a value of ``N`` characters instead of the small one.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import ROOT, SMALL, one_route_submit

SHORT, LONG = 200, 1200
SIDES = ("parent", "timeout", "pool", "child")


def run(side: str, count: int, value: str) -> None:
    """Send ``count`` requests of ``value`` through one side's path (what callgrind counts)."""
    from benchmarks.workload import Echo, EchoWorker
    from juicectl.connection import Connection
    from juicectl.juice import BoxParser, Limits, Responders, answer_bytes, request_bytes

    if side == "child":
        # As the child runtime makes them: both with the default limits, both ways.
        responders = Responders(EchoWorker(), limits=Limits())
        parser = BoxParser(Limits())
        data = request_bytes(Echo, "1", Echo.make_arguments({"value": value}))
        for _ in range(count):
            for box in parser.feed(data):
                responders.answer(box["_command"], box.get("_ask"), box)
        return
    connection = Connection(lambda data: None, pid=0, generation=1, name="bench")
    front = answer_bytes("0", Echo.make_response({"value": value}))
    front = front[: front.rindex(b"-Answer: 0")]
    timeout = 30.0 if side == "timeout" else None
    arguments = {"value": value}
    if side == "pool":
        submit = one_route_submit(connection)
        for tag in range(1, count + 1):
            future = submit(Echo, arguments, None, None)
            connection.data_received(b"%s-Answer: %x\r\n\r\n" % (front, tag))
            future.get()
        return
    for tag in range(1, count + 1):
        future = connection.call(Echo, value=value, timeout=timeout)
        connection.data_received(b"%s-Answer: %x\r\n\r\n" % (front, tag))
        future.get()


def count_instructions(side: str, count: int, size: int) -> int:
    """Instructions callgrind counts for a process running ``count`` requests of ``side``."""
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, __file__, "--run", side, str(count), str(size)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind: {done.stderr[-500:]}")
    return int(found.group(1))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--run"]:
        size = int(argv[3])
        run(argv[1], int(argv[2]), "x" * size if size else SMALL)
        return
    size = 0
    if argv[:1] == ["--value-size"]:
        size, argv = int(argv[1]), argv[2:]
    sides = argv or list(SIDES)
    unknown = [side for side in sides if side not in SIDES]
    if unknown:
        sys.exit(f"unknown side(s) {', '.join(unknown)}: choose from {', '.join(SIDES)}")
    for side in sides:
        long, short = count_instructions(side, LONG, size), count_instructions(side, SHORT, size)
        what = f"{size:,}-character" if size else "small"
        print(f"{side}: {(long - short) / (LONG - SHORT):,.0f} instructions per {what} request",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
