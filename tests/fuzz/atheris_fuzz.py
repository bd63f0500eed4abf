#!/usr/bin/env python3
"""Coverage-guided fuzzing of the parser and the command layer with atheris (optional).

atheris is not a dependency; install it by hand if its wheel fits your platform::

    .venv/bin/python -m pip install atheris
    .venv/bin/python tests/fuzz/atheris_fuzz.py -max_total_time=300

Each input is split in two: a few bytes choose where the stream is cut, the rest is fed to
a ``BoxParser`` in those pieces (with small limits half the time, so limits are reached),
and every box that comes out is classified and parsed as ``Everything`` arguments and
response. Only ``ProtocolError`` (from the parser and ``classify``) and ``ArgumentError``
(from the command layer) may come out; anything else is a crash atheris reports with the
input that caused it. The verdict must not depend on the cuts either: the same bytes fed
whole give the same boxes or the same error class.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import atheris

with atheris.instrument_imports(include=["juicectl"]):
    from juicectl.juice import (
        ArgumentError,
        BoxParser,
        Limits,
        ProtocolError,
        Request,
        Responders,
        classify,
    )

from tests.fuzz.test_command_fuzz import Everything, Handler

SMALL = Limits(max_line_length=64, max_body_length=32, max_headers=8)
RESPONDERS = Responders(Handler())


def _feed(data: bytes, cuts: list[int], limits: Limits | None) -> tuple[list[object], str]:
    parser = BoxParser(limits)
    boxes: list[object] = []
    start = 0
    try:
        for cut in [*sorted(cuts), len(data)]:
            if cut > start:
                boxes += parser.feed(data[start:cut])
                start = cut
        boxes += parser.feed(b"")
    except ProtocolError as error:
        return boxes, type(error).__name__
    return boxes, ""


def test_one_input(raw: bytes) -> None:
    if len(raw) < 4:
        return
    limits = SMALL if raw[0] & 1 else None
    cuts = [b * 3 for b in raw[1:4]]
    data = raw[4:]
    boxes, verdict = _feed(data, cuts, limits)
    whole_boxes, whole_verdict = _feed(data, [], limits)
    if verdict != whole_verdict or (not verdict and boxes != whole_boxes):
        raise AssertionError(f"cuts changed the outcome: {verdict!r} vs {whole_verdict!r}")
    for box in boxes:
        try:
            message = classify(box)  # type: ignore[arg-type]
        except ProtocolError:
            continue
        for parse in (Everything.parse_arguments, Everything.parse_response):
            with contextlib.suppress(ArgumentError):
                parse(box)  # type: ignore[arg-type]
        if isinstance(message, Request):
            RESPONDERS.handle(message)  # never raises: a Reply, whatever the request


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
