"""Long lines and long reads: past the fast paths' windows, the parser goes line by line
(finding each LF with a one-byte search); the boxes must come out the same however the
bytes arrive."""

from __future__ import annotations

import pytest

from juicectl.juice import Box, BoxParser, LimitExceeded, Limits, serialize_box
from tests.juice.helpers import FEEDERS, content, feed_split, feed_whole

BIG = "x" * 60_000


def _stream(*boxes: Box) -> bytes:
    return b"".join(serialize_box(box) for box in boxes)


# A lone CR and a lone LF are data on the wire (the serializer never writes them); a CRLF in
# a value travels as a continuation line.
TRICKY_WIRE = (
    b"Text: " + b"a" * 5000 + b"\rb\nc" + b"d" * 5000 + b"\r\n " + b"e" * 9000 + b"\r\r\n"
    b"-Answer: 2\r\n\r\n"
)
TRICKY = ({"text": "a" * 5000 + "\rb\nc" + "d" * 5000 + "\r\n" + "e" * 9000 + "\r",
           "_answer": "2"}, None)


STREAMS: dict[str, list[Box]] = {
    "request, value last": [Box({"_command": "Echo", "_ask": "1", "value": BIG})],
    "answer, value first": [Box({"value": BIG, "_answer": "1"})],
    "small boxes around a big one": [
        *(Box({"_answer": format(i, "x"), "value": "v" * i}) for i in range(1, 40)),
        Box({"value": BIG, "_answer": "ff"}),
        *(Box({"_answer": format(i, "x"), "value": "w"}) for i in range(300, 340)),
    ],
    "a body between big values": [
        Box({"value": BIG[:7000], "_answer": "1"}),
        Box({"name": "blob"}, body=b"\r\n\r\n" + b"z" * 9000),
        Box({"value": BIG, "_answer": "2"}),
    ],
    "many small boxes, several windows": [
        Box({"_command": "Echo", "_ask": format(i, "x"), "value": f"hello {i}"})
        for i in range(1, 2000)
    ],
}


def _expected(boxes: list[Box]) -> list[tuple[dict[str, str], bytes | None]]:
    return content(boxes)


@pytest.mark.parametrize("name", list(STREAMS))
@pytest.mark.parametrize("feeder", ["whole", "halves", "sevens"])
def test_long_values_parse_the_same_however_they_arrive(name: str, feeder: str) -> None:
    boxes = STREAMS[name]
    assert content(FEEDERS[feeder](_stream(*boxes))) == _expected(boxes)


@pytest.mark.parametrize("name", list(STREAMS))
def test_long_values_in_pipe_sized_reads(name: str) -> None:
    data = _stream(*STREAMS[name])
    assert content(feed_split(data, range(65536, len(data), 65536))) == _expected(STREAMS[name])


@pytest.mark.parametrize("feeder", ["whole", "halves", "sevens", "bytewise"])
def test_lone_cr_and_lf_in_a_long_value(feeder: str) -> None:
    assert content(FEEDERS[feeder](TRICKY_WIRE)) == [TRICKY]
    assert content(FEEDERS[feeder](TRICKY_WIRE * 3)) == [TRICKY] * 3


def test_cut_between_cr_and_lf_of_a_long_line() -> None:
    data = _stream(Box({"value": BIG, "_answer": "1"}))
    cr = data.index(b"\r")
    for cut in (cr - 1, cr, cr + 1, cr + 2):
        assert content(feed_split(data, [cut])) == [({"value": BIG, "_answer": "1"}, None)]


def test_a_line_past_max_line_length_is_still_refused() -> None:
    limits = Limits(max_line_length=10_000)
    data = _stream(Box({"_answer": "1", "value": "y" * 10_001}))
    with pytest.raises(LimitExceeded):
        feed_whole(data, limits)
    with pytest.raises(LimitExceeded):
        BoxParser(limits).feed(data[:10_100])  # refused before the line ends


def test_a_line_at_max_line_length_is_accepted() -> None:
    limits = Limits(max_line_length=10_000)
    box = Box({"_answer": "1", "value": "y" * (10_000 - len("Value: "))})
    assert content(feed_whole(_stream(box), limits)) == content([box])
