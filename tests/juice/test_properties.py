"""Property-based tests: boxes survive the wire, and no input makes the parser misbehave.

``JUICECTL_FUZZ_EXAMPLES`` sets the number of examples per test (100 in the normal suite); for a
long run: ``JUICECTL_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/juice --timeout=0``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from juicectl.juice import Box, BoxParser, Limits, ProtocolError, serialize_box
from tests.juice.helpers import (
    SETTINGS,
    content,
    feed_bytewise,
    feed_split,
    feed_whole,
    keys,
    outcome,
    values,
)

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


# Streams of boxes much like real ones, with the odd line a peer may send, so that the fast
# paths (whole blocks, whole runs) see every kind of box the careful path handles.
wire_keys = st.sampled_from([b"A", b"B", b"Value", b"-Command", b"-Ask", b"K-1", "Ünï".encode()])
wire_text = st.lists(
    st.sampled_from([b"x", b"hello", b": ", b" ", b"\r", b"\n", "é".encode(), b"\x00", b"1"]),
    max_size=8,
).map(b"".join)
odd_lines = st.sampled_from(
    [b" x: y", b"no colon", b"A\x00: v", b"\xff: v", b"A:b", b"", b"-Length: x", b" "]
)
length_keys = st.sampled_from([b"-Length", b"-LENGTH", b"-length"])


@st.composite
def wire_box(draw: Any) -> tuple[list[bytes], bytes | None]:
    """A box's header lines (CRLF excluded) and its body, as they go on the wire."""
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.integers(0, 15)) == 0:
            lines.append(draw(odd_lines))
            continue
        lines.append(draw(wire_keys) + b": " + draw(wire_text))
        lines += [b" " + draw(wire_text) for _ in range(draw(st.integers(0, 2)))]
    if not draw(st.booleans()):
        return lines, None
    body = draw(st.binary(max_size=12) | st.sampled_from([b"\r\n\r\n", b"A: b\r\n\r\n"]))
    # Now and then a -Length that does not match its body: the stream then goes astray.
    size = len(body) + (draw(st.integers(-2, 2)) if draw(st.integers(0, 7)) == 0 else 0)
    zeros = b"0" * draw(st.sampled_from([0, 0, 1, 20]))
    at = draw(st.integers(0, len(lines)))
    lines.insert(at, draw(length_keys) + b": " + zeros + str(max(size, 0)).encode())
    return lines, body


def _edge(draw: Any, measure: int) -> int:
    return max(1, measure + draw(st.sampled_from([-1, 0, 1])))


@SETTINGS
@given(st.lists(wire_box(), min_size=1, max_size=6), st.integers(1, 40), st.data())
def test_fast_paths_agree_with_the_byte_by_byte_path(
    items: list[tuple[list[bytes], bytes | None]], copies: int, data: st.DataObject
) -> None:
    # Limits at the edges of what the stream holds: each one just fits, is just broken, or
    # has one to spare, so that any path that skips a check disagrees with the careful path.
    once = b"".join(
        b"".join(line + b"\r\n" for line in lines) + b"\r\n" + (body or b"")
        for lines, body in items
    )
    # Enough copies for the whole-run path (reads of over 1 KiB), few enough to feed bytewise.
    stream = once * min(copies, 3000 // len(once) + 1)
    lines = [line for box_lines, _ in items for line in box_lines]
    draw = data.draw
    limits = None
    if draw(st.integers(0, 5)):
        line = _edge(draw, max(map(len, lines), default=1))
        header_bytes = max(map(sum, ([len(x) + 2 for x in ls] for ls, _ in items)))
        limits = Limits(
            max_line_length=line,
            max_header_bytes=max(line, _edge(draw, header_bytes)),
            max_headers=_edge(draw, max(len(ls) for ls, _ in items)),
            max_body_length=_edge(draw, max(len(body or b"") for _, body in items)),
        )
    cuts = draw(st.lists(st.integers(1, len(stream)), max_size=8))
    careful = outcome(lambda: feed_bytewise(stream, limits))
    assert outcome(lambda: feed_whole(stream, limits)) == careful
    assert outcome(lambda: feed_split(stream, cuts, limits)) == careful
