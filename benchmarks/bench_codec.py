#!/usr/bin/env python3
"""Boxes per second through our codec and through the reference's, on the same boxes.

Run on demand (never collected by pytest)::

    .venv/bin/python benchmarks/bench_codec.py [--boxes N] [--rounds R]

Three workloads: small request boxes, boxes with multi-line values (continuation lines),
and boxes with a 4 KiB body. For each, parsing is measured two ways: a whole stream of boxes
in one call (``BoxParser.feed`` vs ``epsilon.juice.parseString``) and one box per call (a fresh
parser each time, as the reference's ``parseString`` works); serializing is ``serialize_box`` vs
``JuiceBox.serialize``. The best of several rounds is reported, with the ratio ours/epsilon.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from juicectl.juice import Box, BoxParser, serialize_box

warnings.filterwarnings("ignore", category=DeprecationWarning)

try:
    from epsilon import juice as ejuice
except ImportError:  # pragma: no cover - reported below
    ejuice = None


def _small(i: int) -> dict[str, str]:
    return {"_command": "Echo", "_ask": format(i, "x"), "value": f"hello {i}", "count": str(i)}


def _multiline(i: int) -> dict[str, str]:
    return {
        "_answer": format(i, "x"),
        "text": "line one\r\nline two\r\nline three " + str(i),
        "other": "x" * 200,
    }


def _body(i: int) -> dict[str, str]:
    return {"_command": "Store", "_ask": format(i, "x"), "name": f"blob-{i}", "body": "b" * 4096}


CHUNK = 100

WORKLOADS: dict[str, Callable[[int], dict[str, str]]] = {
    "small": _small,
    "multiline": _multiline,
    "body 4KiB": _body,
}


def _ours(fields: dict[str, str]) -> Box:
    body = fields.get("body")
    rest = {k: v for k, v in fields.items() if k != "body"}
    return Box(rest, body=None if body is None else body.encode())


def _race(
    ours: Callable[[], object], theirs: Callable[[], object], rounds: int
) -> tuple[float, float]:
    """Best CPU time of each, alternating runs so that machine noise hits both alike."""
    best_ours = best_theirs = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        ours()
        best_ours = min(best_ours, time.process_time() - start)
        start = time.process_time()
        theirs()
        best_theirs = min(best_theirs, time.process_time() - start)
    return best_ours, best_theirs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if ejuice is None:
        print("epsilon is not importable (pip install epsilon==0.8.0 twisted six pyopenssl)")
        return 1
    n = args.boxes
    rows: list[tuple[str, str, float, float]] = []
    for name, make in WORKLOADS.items():
        fields = [make(i) for i in range(n)]
        ours = [_ours(f) for f in fields]
        theirs = [ejuice.JuiceBox(**f) for f in fields]
        encoded = [serialize_box(b) for b in ours]
        # The reference recurses once per body box within one read, so a long stream of body
        # boxes overflows its stack: both parsers get the stream in chunks of CHUNK boxes.
        chunks = [b"".join(encoded[i : i + CHUNK]) for i in range(0, n, CHUNK)]
        if name != "body 4KiB":
            assert b"".join(chunks) == b"".join(b.serialize() for b in theirs)
        few = encoded[: max(1, n // 10)]

        def parse_ours(chunks: list[bytes] = chunks) -> object:
            parser = BoxParser()
            return [parser.feed(chunk) for chunk in chunks]

        def parse_theirs(chunks: list[bytes] = chunks) -> object:
            return [ejuice.parseString(chunk) for chunk in chunks]

        def one_ours(few: list[bytes] = few) -> object:
            return [BoxParser().feed(data) for data in few]

        def one_theirs(few: list[bytes] = few) -> object:
            return [ejuice.parseString(data) for data in few]

        def ser_ours(ours: list[Box] = ours) -> object:
            return [serialize_box(b) for b in ours]

        def ser_theirs(theirs: list[object] = theirs) -> object:
            return [b.serialize() for b in theirs]  # type: ignore[attr-defined]

        for chunk in chunks[:3]:
            mine = BoxParser().feed(chunk)
            ref = ejuice.parseString(chunk)
            assert [dict(b) for b in mine] == [
                {k: v for k, v in b.items() if k != "body"} for b in ref
            ]
        for op, count, mine, reference in (
            (f"parse {CHUNK}/call", n, parse_ours, parse_theirs),
            ("parse 1 box/call", len(few), one_ours, one_theirs),
            ("serialize", n, ser_ours, ser_theirs),
        ):
            t_ours, t_theirs = _race(mine, reference, args.rounds)
            rows.append((name, op, count / t_ours, count / t_theirs))
    print(f"Python {sys.version.split()[0]}, {n} boxes per workload, best of {args.rounds} rounds")
    print(
        f"{'workload':<11} {'operation':<17} {'ours box/s':>12} {'epsilon box/s':>14} {'ratio':>7}"
    )
    for name, op, ours_rate, theirs_rate in rows:
        print(
            f"{name:<11} {op:<17} {ours_rate:>12,.0f} {theirs_rate:>14,.0f} "
            f"{ours_rate / theirs_rate:>6.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
