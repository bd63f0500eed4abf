"""Property-based tests: boxes survive the wire, and no input makes the parser misbehave.

``JUICECTL_FUZZ_EXAMPLES`` sets the number of examples per test (100 in the normal suite); for a
long run: ``JUICECTL_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/juice --timeout=0``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from juicectl.juice import Box, BoxParser, Limits, ProtocolError, serialize_box
from tests.juice.helpers import SETTINGS, content, feed_split, keys, values

bodies = st.one_of(st.none(), st.binary(max_size=64))


@st.composite
def boxes(draw: Any) -> Box:
    fields = draw(st.dictionaries(keys, values, max_size=6))
    return Box(fields, body=draw(bodies))


@SETTINGS
@given(st.lists(boxes(), max_size=6), st.data())
def test_boxes_round_trip_in_any_split(items: list[Box], data: st.DataObject) -> None:
    stream = b"".join(map(serialize_box, items))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    assert content(feed_split(stream, cuts)) == content(items)


@SETTINGS
@given(boxes())
def test_box_round_trips_many_times_in_one_read(box: Box) -> None:
    # Many copies in one read: the fast paths; byte by byte: the careful path. Same boxes.
    stream = serialize_box(box) * 30
    parser = BoxParser()
    assert content(parser.feed(stream)) == content([box]) * 30
    assert parser.feed(b"") == []


# Bytes that often make up Juice, so that the fuzzer reaches the interesting states.
atoms = st.sampled_from(
    [
        b"\r\n",
        b"\r",
        b"\n",
        b": ",
        b" ",
        b"A",
        b"k",
        b"\x00",
        b"\xff",
        "é".encode(),
        b"-Length: ",
        b"-LENGTH: ",
        b"0",
        b"3",
        b"12",
        b"Key: value\r\n",
        b" more\r\n",
        b"-Command: Echo\r\n",
        b"-Ask: 1\r\n",
        b"\r\n\r\n",
        b"x" * 40,
    ]
)
fuzz_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(atoms, max_size=60).map(b"".join),
    st.lists(atoms, max_size=30).map(lambda parts: b"".join(parts) * 12),
)
small_limits = st.sampled_from(
    [None, Limits(max_line_length=24, max_body_length=16, max_headers=4)]
)


def _run(data: bytes, cuts: list[int], limits: Limits | None) -> tuple[list[Any], str | None]:
    parser = BoxParser(limits)
    bound = parser.limits.max_line_length + 1
    boxes: list[Box] = []
    start = 0
    try:
        for cut in [*sorted(cuts), len(data)]:
            if cut > start:
                boxes += parser.feed(data[start:cut])
                start = cut
                # Never more than one line (plus a pending CR) or one body held back.
                assert parser.buffered <= max(bound, parser.limits.max_body_length)
        boxes += parser.feed(b"")
    except ProtocolError as exc:
        assert parser.buffered == 0
        return content(boxes), type(exc).__name__
    return content(boxes), None


@SETTINGS
@given(fuzz_bytes, st.data(), small_limits)
def test_fuzz_only_protocol_errors_and_bounded_memory(
    data: bytes, draw: st.DataObject, limits: Limits | None
) -> None:
    cuts = draw.draw(st.lists(st.integers(0, len(data)), max_size=10))
    whole = _run(data, [], limits)
    split = _run(data, cuts, limits)
    bytewise = _run(data, list(range(1, len(data))), limits)
    # However the bytes arrive, the verdict is the same; when there is no error, so are the
    # boxes (with an error, the fast path may have held back boxes it would have dropped).
    assert whole[1] == split[1] == bytewise[1]
    if whole[1] is None:
        assert whole == split == bytewise


@SETTINGS
@given(st.binary(min_size=1, max_size=200))
def test_errors_stick(data: bytes) -> None:
    parser = BoxParser()
    try:
        parser.feed(b"garbage without colon\r\n" + data)
    except ProtocolError as exc:
        first = exc
    else:
        raise AssertionError("garbage accepted")
    for more in (data, b""):
        try:
            parser.feed(more)
        except ProtocolError as exc:
            assert exc is first
        else:
            raise AssertionError("error forgotten")


@SETTINGS
@given(boxes())
def test_serializer_never_writes_what_the_parser_rejects(box: Box) -> None:
    assume(box)
    [parsed] = BoxParser().feed(serialize_box(box))
    assert parsed == box
