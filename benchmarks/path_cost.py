#!/usr/bin/env python3
"""Microseconds of Python per request on each side, with no pipes and no threads.

    .venv/bin/python benchmarks/path_cost.py [--value-size N] [--count N] [--parts]

The parent's side is a real ``Connection`` whose write goes nowhere: ``call()`` (arguments,
tag, future, bytes), then ``data_received()`` with the answer's bytes (parse, settle), then
``get()``. The child's side is its runtime's work for one request: parse the request bytes,
run the responder on the box (arguments in, response out), answer bytes.

``--parts`` also times each step on its own (the table in ``docs/performance.md``).

The best of several repeats is reported: on a shared machine the minimum is what the code
costs, the rest is other people's load. Use it to see what a change to the path is worth;
``run.py`` says what it means end to end.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import SMALL
from benchmarks.workload import Echo, EchoWorker
from juicectl._future import ReplyFuture
from juicectl.connection import Connection
from juicectl.juice import BoxParser, Limits, Responders, answer_bytes, request_bytes


def parent_cost(value: str, count: int, repeat: int) -> float:
    """Seconds per request on the parent's side."""
    connection = Connection(lambda data: None, pid=0, generation=1, name="bench")
    # Tags are "1", "2", ... in hex. The answer's bytes end with its -Answer line (the
    # reference's order), so each answer is the shared front plus its tag line: made per
    # call, like the fresh bytes a read returns (a list of them all would measure page
    # faults, not the code).
    front = answer_bytes("0", Echo.make_response({"value": value}))
    front = front[: front.rindex(b"-Answer: 0")]
    tags = (format(i, "x").encode() for i in range(1, 1 << 62))
    call, receive = connection.call, connection.data_received

    def one() -> None:
        future = call(Echo, value=value)
        receive(b"%s-Answer: %s\r\n\r\n" % (front, next(tags)))
        future.get()

    return min(timeit.repeat(one, number=count, repeat=repeat)) / count


def child_cost(value: str, count: int, repeat: int) -> float:
    """Seconds per request of the child runtime's sequential work (no I/O)."""
    # As the child runtime makes them: both with the default limits, both ways.
    responders = Responders(EchoWorker(), limits=Limits())
    parser = BoxParser(Limits())
    data = request_bytes(Echo, "1", Echo.make_arguments({"value": value}))

    def one() -> None:
        for box in parser.feed(data):
            reply = responders.answer(box["_command"], box.get("_ask"), box)
            assert isinstance(reply, bytes)

    return min(timeit.repeat(one, number=count, repeat=repeat)) / count


def parts(value: str, count: int, repeat: int) -> list[tuple[str, float]]:
    """Seconds per call of each step of the path, on its own."""
    fields = Echo.make_arguments({"value": value})
    request = request_bytes(Echo, "1f", fields)
    answer = answer_bytes("1f", Echo.make_response({"value": value}))
    parser = BoxParser()
    answer_box = parser.feed(answer)[0]
    request_box = parser.feed(request)[0]
    responders = Responders(EchoWorker(), limits=Limits())
    connections: list[Connection] = []

    def new_connection() -> None:
        # A fresh one per repeat: unanswered requests pile up in its table.
        connections[:] = [Connection(lambda data: None, pid=0, generation=1, name="bench")]

    def call() -> None:
        connections[0].call(Echo, value=value)

    steps: list[tuple[str, Callable[[], object]]] = [
        ("parent: Connection.call (no write)", call),
        ("  Echo.make_arguments", lambda: Echo.make_arguments({"value": value})),
        ("  ReplyFuture()", ReplyFuture),
        ("  request_bytes", lambda: request_bytes(Echo, "1f", fields)),
        ("parent: BoxParser.feed (one answer)", lambda: parser.feed(answer)),
        ("parent: Echo.parse_response", lambda: Echo.parse_response(answer_box)),
        ("child: BoxParser.feed (one request)", lambda: parser.feed(request)),
        ("child: Responders.answer", lambda: responders.answer("Echo", "1f", request_box)),
        ("  Echo.parse_arguments", lambda: Echo.parse_arguments(request_box)),
        ("  Echo.make_response", lambda: Echo.make_response({"value": value})),
        ("  answer_bytes", lambda: answer_bytes("1f", fields)),
    ]
    return [
        (name, min(timeit.repeat(step, setup=new_connection, number=count, repeat=repeat))
         / count)
        for name, step in steps
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--value-size", type=int, default=0, help="0: the small value")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--parts", action="store_true", help="time each step on its own")
    args = parser.parse_args()
    value = "x" * args.value_size if args.value_size else SMALL
    count = args.count or (500 if len(value) < 1000 else 50)
    parent = parent_cost(value, count, args.repeat)
    child = child_cost(value, count, args.repeat)
    print(f"{len(value)}-byte value: parent {parent * 1e6:.2f} us, child {child * 1e6:.2f} us "
          f"per request (best of {args.repeat})")
    if args.parts:
        for name, seconds in parts(value, count, args.repeat):
            print(f"  {name:40} {seconds * 1e6:7.2f} us")


if __name__ == "__main__":
    main()
