"""What the parser says and when: exact error messages on every path, the validation of
``Limits``, boxes handed over as soon as their last byte arrives, and what it holds between."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from juicectl.juice import (
    Box,
    BoxParser,
    LimitExceeded,
    Limits,
    MalformedBox,
    ProtocolError,
    TruncatedBox,
    serialize_box,
)
from tests.juice.helpers import (
    content,
    feed_bytewise,
    feed_random,
    feed_split,
    feed_whole,
    outcomes,
)

LONG_NAME = b"\xff" + b"n" * 100
LONG_LINE = b"L" * 100

# (id, limits, wire bytes, error class, its exact message)
ERRORS: list[tuple[str, Limits | None, bytes, type[ProtocolError], str]] = [
    (
        "bad UTF-8 in a name",
        None,
        LONG_NAME + b": v\r\n\r\n",
        MalformedBox,
        f"header name is not valid UTF-8: {LONG_NAME[:80]!r}",
    ),
    (
        "bad UTF-8 in a value",
        None,
        b"A: \xff\r\n\r\n",
        MalformedBox,
        "header value is not valid UTF-8: 'utf-8' codec can't decode byte 0xff in position 0: "
        "invalid start byte",
    ),
    (
        "-Length not decimal",
        None,
        b"-Length: " + b"1x" * 30 + b"\r\n\r\n",
        MalformedBox,
        f"-Length is not a non-negative decimal integer: {'1x' * 20!r}",
    ),
    (
        "-Length not decimal, short",
        None,
        b"-Length: 1x\r\n\r\n1",
        MalformedBox,
        "-Length is not a non-negative decimal integer: '1x'",
    ),
    (
        "-Length empty",
        None,
        b"-Length: \r\n\r\n",
        MalformedBox,
        "-Length is not a non-negative decimal integer: ''",
    ),
    (
        "-Length past the limit",
        Limits(max_body_length=10),
        b"-Length: 11\r\n\r\n" + b"x" * 11,
        LimitExceeded,
        "-Length 11 exceeds max_body_length (10 bytes)",
    ),
    (
        "-Length with very many digits",
        None,
        b"-Length: " + b"9" * 5000 + b"\r\n\r\n",
        LimitExceeded,
        f"-Length {'9' * 40} exceeds max_body_length ({64 << 20} bytes)",
    ),
    (
        "-Length one digit longer than the limit",
        Limits(max_body_length=99),
        b"-Length: 100\r\n\r\n" + b"x" * 100,
        LimitExceeded,
        "-Length 100 exceeds max_body_length (99 bytes)",
    ),
    (
        "line past max_line_length",
        Limits(max_line_length=10),
        b"A: 12345678\r\n\r\n",
        LimitExceeded,
        "a header line is longer than max_line_length (10 bytes)",
    ),
    (
        "unfinished line past max_line_length",
        Limits(max_line_length=10),
        b"A: 12345678",
        LimitExceeded,
        "a header line is longer than max_line_length (10 bytes)",
    ),
    (
        "too many headers",
        Limits(max_headers=2),
        b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n",
        LimitExceeded,
        "a box has more than max_headers (2) lines",
    ),
    (
        "too many header bytes",
        Limits(max_line_length=10, max_header_bytes=20),
        b"A: 12345\r\nB: 12345\r\nC: 1\r\n\r\n",
        LimitExceeded,
        "a box's header lines add up to more than max_header_bytes (20 bytes)",
    ),
    (
        "continuation line first",
        None,
        b" " + LONG_LINE + b"\r\n\r\n",
        MalformedBox,
        f"continuation line with no header before it: {(b' ' + LONG_LINE)[:80]!r}",
    ),
    (
        "continuation line after -Length",
        None,
        b"-Length: 1\r\n 2\r\n\r\nx",
        MalformedBox,
        "continuation line after -Length",
    ),
    (
        "line without colon-space",
        None,
        LONG_LINE + b"\r\n\r\n",
        MalformedBox,
        f"header line without ': ': {LONG_LINE[:80]!r}",
    ),
    (
        "stream ends in a header line",
        None,
        b"A: 1\r\n\r\nB: 12",
        TruncatedBox,
        "the stream ended in a header line (5 bytes, no CRLF)",
    ),
    (
        "stream ends before the blank line",
        None,
        b"A: 1\r\n\r\nB: 12\r\n",
        TruncatedBox,
        "the stream ended before the blank line that ends a box",
    ),
    (
        "stream ends in a body",
        None,
        b"A: 1\r\n\r\n-Length: 5\r\n\r\nabc",
        TruncatedBox,
        "the stream ended in a body: 3 of 5 bytes received",
    ),
    (
        "stream ends before the body",
        None,
        b"-Length: 5\r\n\r\n",
        TruncatedBox,
        "the stream ended in a body: 0 of 5 bytes received",
    ),
]


@pytest.mark.parametrize(
    ("limits", "data", "error", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_error_messages_are_exact_on_every_path(
    limits: Limits | None, data: bytes, error: type[ProtocolError], message: str
) -> None:
    feeds: dict[str, Callable[[bytes], object]] = {
        "whole": lambda data: feed_whole(data, limits),
        "bytewise": lambda data: feed_bytewise(data, limits),
        "sevens": lambda data: feed_split(data, range(7, len(data), 7), limits),
        "random": lambda data: feed_random(data, 7, limits),
        "after a run": lambda data: feed_whole(b"A: 1\r\n\r\n" * 200 + data, limits),
    }
    for name, feed in feeds.items():
        with pytest.raises(error) as raised:
            feed(data)
        assert type(raised.value) is error, f"fed {name}"
        assert str(raised.value) == message, f"fed {name}"


def test_data_after_the_end_of_the_stream_says_so() -> None:
    parser = BoxParser()
    assert parser.feed(b"") == []
    with pytest.raises(ProtocolError, match=r"^data received after the end of the stream$"):
        parser.feed(b"A: b\r\n\r\n")


FIELDS = ["max_line_length", "max_body_length", "max_headers", "max_header_bytes"]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", [0, -1, True, False, 1.5, "9", None])
def test_limits_refuse_what_is_not_a_positive_int(field: str, value: object) -> None:
    with pytest.raises(ValueError) as raised:
        Limits(**{field: value})  # type: ignore[arg-type]
    assert str(raised.value) == f"Limits.{field} must be a positive int, not {value!r}"


def test_limits_accept_one() -> None:
    limits = Limits(max_line_length=1, max_body_length=1, max_headers=1, max_header_bytes=1)
    assert (limits.max_line_length, limits.max_body_length) == (1, 1)
    assert (limits.max_headers, limits.max_header_bytes) == (1, 1)
    # The smallest limits still parse what fits them: an empty box, and a one-byte body.
    assert content(BoxParser(limits).feed(b"\r\n")) == [({}, None)]
    with pytest.raises(LimitExceeded):
        BoxParser(limits).feed(b"A: b\r\n")


def test_max_header_bytes_may_equal_max_line_length_but_not_less() -> None:
    assert Limits(max_line_length=100, max_header_bytes=100).max_header_bytes == 100
    with pytest.raises(ValueError) as raised:
        Limits(max_line_length=100, max_header_bytes=99)
    assert str(raised.value) == (
        "Limits.max_header_bytes (99) must be at least max_line_length (100)"
    )


def test_limits_are_kept_and_defaulted() -> None:
    limits = Limits(max_line_length=7, max_body_length=8, max_headers=9, max_header_bytes=10)
    assert BoxParser(limits).limits is limits
    assert BoxParser().limits == Limits()
    assert BoxParser(None).limits == Limits()


STREAM_BOXES = [
    Box({"_command": "Echo", "_ask": "1", "value": "hi"}),
    Box(),
    Box({"text": "one\r\ntwo", "k": "a: b"}),
    Box({"name": "blob"}, body=b"\r\n\r\nA: b\r\n\r\n"),
    Box({"name": "empty"}, body=b""),
    Box({"_answer": "1", "value": "v" * 700}),
    Box({"_answer": "2"}),
]


@pytest.mark.parametrize("copies", [1, 2])
def test_each_box_comes_out_with_its_last_byte(copies: int) -> None:
    # Byte by byte, a box is handed over by the very call that brings its last byte, and
    # then nothing of it is held; a byte earlier, it is still pending.
    boxes = STREAM_BOXES * copies
    wire = [serialize_box(box) for box in boxes]
    data = b"".join(wire)
    ends = {sum(map(len, wire[: i + 1])) - 1: i for i in range(len(wire))}
    parser = BoxParser()
    got: list[Box] = []
    for index in range(len(data)):
        out = parser.feed(data[index : index + 1])
        if index in ends:
            assert content(out) == content([boxes[ends[index]]]), f"byte {index}"
            assert not parser.in_box
            assert parser.buffered == 0
        else:
            assert out == [], f"byte {index}"
            assert parser.in_box
        got += out
    assert content(got) == content(boxes)


@pytest.mark.parametrize("seed", range(6))
def test_every_complete_box_comes_out_of_each_read(seed: int) -> None:
    # However a read is cut, the boxes it completes come out of that very call.
    boxes = STREAM_BOXES * 40
    wire = [serialize_box(box) for box in boxes]
    data = b"".join(wire)
    ends = [sum(map(len, wire[: i + 1])) for i in range(len(wire))]
    rng = random.Random(seed)
    cuts = sorted({rng.randrange(1, len(data)) for _ in range(rng.randint(1, 40))} | {len(data)})
    parser = BoxParser()
    got: list[Box] = []
    start = 0
    for cut in cuts:
        got += parser.feed(data[start:cut])
        start = cut
        done = sum(1 for end in ends if end <= cut)
        assert content(got) == content(boxes[:done]), f"after {cut} bytes"
        pending = cut - max([0, *(end for end in ends if end <= cut)])
        assert parser.in_box == (pending > 0)
        # A partial line, or the headers' lines and the body's bytes, are all it holds.
        assert parser.buffered <= pending


def test_what_is_held_between_reads() -> None:
    parser = BoxParser()
    assert not parser.in_box
    assert parser.buffered == 0
    assert parser.feed(b"A: 1\r\nB: 2") == []
    assert parser.in_box
    assert parser.buffered == len(b"B: 2")  # a partial line waits; whole lines are parsed
    assert parser.feed(b"\r\n") == []
    assert parser.in_box
    assert parser.buffered == 0
    assert content(parser.feed(b"\r\n-Length: 3\r\n\r\nab")) == [({"a": "1", "b": "2"}, None)]
    assert parser.in_box
    assert parser.buffered == 2  # the body so far
    assert content(parser.feed(b"c")) == [({}, b"abc")]
    assert not parser.in_box
    assert parser.buffered == 0


def test_after_an_error_nothing_is_held() -> None:
    parser = BoxParser()
    with pytest.raises(MalformedBox):
        parser.feed(b"A: 1\r\n 2\r\nB: 3\r\nno colon\r\n")
    assert not parser.in_box
    assert parser.buffered == 0
    with pytest.raises(MalformedBox):
        parser.feed(b"\r\n")
    assert not parser.in_box


@pytest.mark.parametrize("key", [b"-Length", b"-LENGTH", b"-length"])
def test_a_run_of_empty_bodies(key: bytes) -> None:
    # Boxes whose only header is a -Length of 0, in any spelling: each has an empty body (no
    # -Length field), however many come in one read.
    data = (key + b": 0\r\n\r\n") * 200 + (key + b": 00\r\nA: b\r\n\r\n") * 100
    expected = ([({}, b"")] * 200 + [({"a": "b"}, b"")] * 100, None)
    for name, result in outcomes(data).items():
        assert result == expected, f"fed {name}"


def test_a_body_cut_short_after_boxes_read_line_by_line() -> None:
    # The box before is finished by the careful path, the body box by the fast one: the
    # truncation still says how much of the body came.
    parser = BoxParser()
    assert parser.feed(b"A: 1\r\n") == []
    assert content(parser.feed(b"\r\n-Length: 5\r\n\r\nabc")) == [({"a": "1"}, None)]
    with pytest.raises(TruncatedBox) as raised:
        parser.feed(b"")
    assert str(raised.value) == "the stream ended in a body: 3 of 5 bytes received"


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytearray_and_memoryview_give_bytes_bodies(kind: type) -> None:
    data = b"A: 1\r\n\r\n-Length: 3\r\n\r\nxyz" * 50
    parser = BoxParser()
    boxes = parser.feed(kind(data))
    assert content(boxes) == [({"a": "1"}, None), ({}, b"xyz")] * 50
    assert all(type(box.body) is bytes for box in boxes[1::2])
    assert content(BoxParser().feed(kind(b"-Length: 2\r\n\r\nok"))) == [({}, b"ok")]
