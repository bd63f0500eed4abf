"""The incremental parser: table-driven cases fed whole, byte by byte, in pieces and with
trailing data; malformed input; limits (raised at once, the excess never buffered); end of
stream; errors that stick."""

from __future__ import annotations

import pytest

from juicectl.juice import (
    Box,
    BoxParser,
    LimitExceeded,
    Limits,
    MalformedBox,
    ProtocolError,
    TruncatedBox,
)
from tests.juice.helpers import FEEDERS, content, feed_bytewise, feed_whole

# (id, wire bytes, the boxes as (fields, body))
CASES: list[tuple[str, bytes, list[tuple[dict[str, str], bytes | None]]]] = [
    ("one field", b"Value: hi\r\n\r\n", [({"value": "hi"}, None)]),
    (
        "request",
        b"-Command: Echo\r\n-Ask: fe\r\nValue: a\r\n b\r\n\r\n",
        [({"_command": "Echo", "_ask": "fe", "value": "a\r\nb"}, None)],
    ),
    ("empty value", b"Value: \r\n\r\n", [({"value": ""}, None)]),
    ("value of spaces", b"Value:   \r\n\r\n", [({"value": "  "}, None)]),
    ("colon-space inside value", b"Value: a: b: c\r\n\r\n", [({"value": "a: b: c"}, None)]),
    (
        "key normalised",
        b"-Error-Code: X\r\nSTORE-Path: p\r\n\r\n",
        [({"_error_code": "X", "store_path": "p"}, None)],
    ),
    (
        "keyword key",
        b"From: a\r\nIMPORT: b\r\nTrue: c\r\n\r\n",
        [({"From": "a", "Import": "b", "true": "c"}, None)],
    ),
    (
        "continuation lines",
        b"Text: one\r\n two\r\n \r\n three\r\n\r\n",
        [({"text": "one\r\ntwo\r\n\r\nthree"}, None)],
    ),
    ("value ending in CRLF", b"Text: a\r\n \r\n\r\n", [({"text": "a\r\n"}, None)]),
    ("continuation keeps spaces", b"Text: a\r\n   b\r\n\r\n", [({"text": "a\r\n  b"}, None)]),
    ("lone CR and LF are data", b"Text: a\rb\nc\r\r\n\r\n", [({"text": "a\rb\nc\r"}, None)]),
    ("utf-8", "Näme: ünïcödé ✓\r\n\r\n".encode(), [({"näme": "ünïcödé ✓"}, None)]),
    ("empty box", b"\r\n", [({}, None)]),
    (
        "empty boxes around one",
        b"\r\nA: b\r\n\r\n\r\n",
        [({}, None), ({"a": "b"}, None), ({}, None)],
    ),
    ("repeated key: last wins", b"A: 1\r\nB: 2\r\nA: 3\r\n\r\n", [({"a": "3", "b": "2"}, None)]),
    ("same key in two spellings", b"Ab-C: 1\r\nab_c: 2\r\n\r\n", [({"ab_c": "2"}, None)]),
    ("body", b"-Length: 5\r\nName: x\r\n\r\nhello", [({"name": "x"}, b"hello")]),
    ("empty body", b"-Length: 0\r\n\r\n", [({}, b"")]),
    ("leading zeros in -Length", b"-Length: 003\r\n\r\nabc", [({}, b"abc")]),
    ("-Length in any case", b"-LENGTH: 2\r\n\r\nok", [({}, b"ok")]),
    ("binary body with CRLFs", b"-Length: 6\r\n\r\n\r\n\r\n\x00\xff", [({}, b"\r\n\r\n\x00\xff")]),
    (
        "body then box",
        b"-Length: 4\r\n\r\n\r\n\r\nA: b\r\n\r\n",
        [({}, b"\r\n\r\n"), ({"a": "b"}, None)],
    ),
    ("two boxes", b"A: 1\r\n\r\nB: 2\r\n\r\n", [({"a": "1"}, None), ({"b": "2"}, None)]),
    ("empty key", b": v\r\n\r\n", [({"": "v"}, None)]),
    ("body key from the wire is a field", b"Body: x\r\n\r\n", [({"body": "x"}, None)]),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cases(data: bytes, expected: list[tuple[dict[str, str], bytes | None]]) -> None:
    for name, feed in FEEDERS.items():
        assert content(feed(data)) == expected, f"fed {name}"


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cases_with_trailing_data(
    data: bytes, expected: list[tuple[dict[str, str], bytes | None]]
) -> None:
    # A partial box after the complete ones: the complete ones come out, the rest waits.
    parser = BoxParser()
    assert content(parser.feed(data + b"Partial: x")) == expected
    assert parser.in_box
    assert parser.buffered == len(b"Partial: x")
    assert content(parser.feed(b"yz\r\n\r\n")) == [({"partial": "xyz"}, None)]
    assert not parser.in_box
    assert parser.feed(b"") == []


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cases_repeated(data: bytes, expected: list[tuple[dict[str, str], bytes | None]]) -> None:
    # Many boxes in one read take the parser's fast paths: they must agree with the slow one.
    assert content(feed_whole(data * 40)) == expected * 40
    assert content(feed_bytewise(data * 3)) == expected * 3


def test_boxes_are_box_instances_with_body_attribute() -> None:
    [plain, with_body] = feed_whole(b"A: b\r\n\r\n-Length: 1\r\n\r\nx")
    assert isinstance(plain, Box)
    assert plain.body is None
    assert with_body.body == b"x"
    assert isinstance(with_body.body, bytes)


def test_memoryview_and_bytearray_input() -> None:
    parser = BoxParser()
    assert parser.feed(bytearray(b"A: b\r\n")) == []
    assert content(parser.feed(memoryview(b"\r\n"))) == [({"a": "b"}, None)]


# (id, wire bytes, error class)
MALFORMED: list[tuple[str, bytes, type[ProtocolError]]] = [
    ("no colon-space", b"Value hi\r\n\r\n", MalformedBox),
    ("colon without space", b"Value:hi\r\n\r\n", MalformedBox),
    ("continuation first", b" orphan\r\n\r\n", MalformedBox),
    ("continuation after a blank line", b"A: b\r\n\r\n c\r\n\r\n", MalformedBox),
    ("continuation after -Length", b"-Length: 1\r\n 2\r\n\r\nxx", MalformedBox),
    ("bad utf-8 in value", b"A: \xff\xfe\r\n\r\n", MalformedBox),
    ("bad utf-8 in key", b"\xff: v\r\n\r\n", MalformedBox),
    ("negative -Length", b"-Length: -1\r\n\r\n", MalformedBox),
    ("signed -Length", b"-Length: +1\r\n\r\nx", MalformedBox),
    ("spaced -Length", b"-Length:  1\r\n\r\nx", MalformedBox),
    ("-Length with trailing space", b"-Length: 1 \r\n\r\nx", MalformedBox),
    ("hex -Length", b"-Length: 0x1\r\n\r\nx", MalformedBox),
    ("underscored -Length", b"-Length: 1_0\r\n\r\nxxxxxxxxxx", MalformedBox),
    ("empty -Length", b"-Length: \r\n\r\n", MalformedBox),
    ("non-ascii digits in -Length", "-Length: \uff11\r\n\r\nx".encode(), MalformedBox),
    ("truncated header", b"A: b", TruncatedBox),
    ("truncated before blank line", b"A: b\r\n", TruncatedBox),
    ("truncated body", b"-Length: 5\r\n\r\nabc", TruncatedBox),
    ("truncated after CR", b"A: b\r\n\r", TruncatedBox),
    ("huge -Length", b"-Length: 99999999999999999999999999999\r\n\r\n", LimitExceeded),
    ("-Length past the limit", b"-Length: %d\r\n\r\n" % ((64 << 20) + 1), LimitExceeded),
]


@pytest.mark.parametrize(
    ("data", "error"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed(data: bytes, error: type[ProtocolError]) -> None:
    for name, feed in FEEDERS.items():
        with pytest.raises(error):
            feed(data)
            pytest.fail(f"fed {name}: accepted")


@pytest.mark.parametrize(
    ("data", "error"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_after_good_boxes(data: bytes, error: type[ProtocolError]) -> None:
    # The good boxes before the bad one are not lost: fed separately, they come out first.
    parser = BoxParser()
    good = b"A: 1\r\n\r\n" * 30
    assert len(parser.feed(good)) == 30
    with pytest.raises(error):
        parser.feed(data)
        parser.feed(b"")


def test_error_sticks() -> None:
    parser = BoxParser()
    with pytest.raises(MalformedBox) as first:
        parser.feed(b"garbage\r\n")
    for more in (b"A: b\r\n\r\n", b"", b"x"):
        with pytest.raises(MalformedBox) as again:
            parser.feed(more)
        assert again.value is first.value
    assert parser.buffered == 0


def test_end_of_stream_between_boxes_is_clean() -> None:
    parser = BoxParser()
    assert len(parser.feed(b"A: b\r\n\r\n")) == 1
    assert parser.feed(b"") == []
    assert parser.feed(b"") == []  # repeated end of stream: still nothing


def test_data_after_end_of_stream() -> None:
    parser = BoxParser()
    parser.feed(b"")
    with pytest.raises(ProtocolError):
        parser.feed(b"A: b\r\n\r\n")


def test_truncated_error_after_end_sticks() -> None:
    parser = BoxParser()
    parser.feed(b"A: b\r\n")
    with pytest.raises(TruncatedBox):
        parser.feed(b"")
    with pytest.raises(TruncatedBox):
        parser.feed(b"")


def test_limits_defaults() -> None:
    limits = Limits()
    assert limits.max_line_length == 1 << 20
    assert limits.max_body_length == 64 << 20
    assert limits.max_headers == 4096
    assert limits.max_header_bytes == 16 << 20


@pytest.mark.parametrize(
    "field", ["max_line_length", "max_body_length", "max_headers", "max_header_bytes"]
)
@pytest.mark.parametrize("value", [0, -1, True, 1.5, "9"])
def test_limits_are_validated(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: value})  # type: ignore[arg-type]


class TestLineLimit:
    limits = Limits(max_line_length=100)

    def test_line_at_the_limit_passes(self) -> None:
        line = b"A: " + b"x" * 97
        assert len(line) == 100
        assert content(feed_whole(line + b"\r\n\r\n", self.limits)) == [({"a": "x" * 97}, None)]
        assert content(feed_bytewise(line + b"\r\n\r\n", self.limits)) == [({"a": "x" * 97}, None)]

    def test_complete_line_over_the_limit(self) -> None:
        with pytest.raises(LimitExceeded):
            feed_whole(b"A: " + b"x" * 98 + b"\r\n\r\n", self.limits)

    def test_raised_as_soon_as_the_limit_is_passed_bytewise(self) -> None:
        parser = BoxParser(self.limits)
        for _ in range(100):
            parser.feed(b"x")
        # The CR of a CRLF may still come: one byte of grace.
        parser.feed(b"\r")
        assert parser.buffered == 101
        parser = BoxParser(self.limits)
        for _ in range(100):
            parser.feed(b"x")
        with pytest.raises(LimitExceeded):
            parser.feed(b"x")
        assert parser.buffered == 0

    def test_huge_chunk_without_crlf_is_refused_not_kept(self) -> None:
        parser = BoxParser(Limits(max_line_length=1000))
        with pytest.raises(LimitExceeded):
            parser.feed(b"x" * 5_000_000)
        assert parser.buffered == 0

    def test_long_line_after_complete_boxes(self) -> None:
        parser = BoxParser(self.limits)
        with pytest.raises(LimitExceeded):
            parser.feed(b"A: b\r\n\r\n" * 50 + b"B: " + b"y" * 200)

    def test_continuation_lines_are_measured_one_by_one(self) -> None:
        value = "\r\n".join(["y" * 90] * 20)
        data = b"A: " + value.replace("\r\n", "\r\n ").encode() + b"\r\n\r\n"
        assert content(feed_whole(data, self.limits)) == [({"a": value}, None)]

    def test_buffer_stays_bounded_while_a_long_line_grows(self) -> None:
        parser = BoxParser(self.limits)
        with pytest.raises(LimitExceeded):
            for _ in range(1000):
                parser.feed(b"zz")
                assert parser.buffered <= 101
        assert parser.buffered == 0


class TestBodyLimit:
    limits = Limits(max_body_length=10)

    def test_body_at_the_limit(self) -> None:
        assert content(feed_whole(b"-Length: 10\r\n\r\n0123456789", self.limits)) == [
            ({}, b"0123456789")
        ]

    def test_refused_when_the_header_line_arrives(self) -> None:
        # No blank line yet, no body byte sent: the -Length line alone is refused.
        parser = BoxParser(self.limits)
        with pytest.raises(LimitExceeded):
            parser.feed(b"-Length: 11\r\n")
        assert parser.buffered == 0

    def test_refused_on_the_fast_path_too(self) -> None:
        parser = BoxParser(self.limits)
        with pytest.raises(LimitExceeded):
            parser.feed(b"A: b\r\n\r\n" * 100 + b"-Length: 11\r\n\r\n" + b"x" * 11)

    def test_hundred_gigabytes_announced(self) -> None:
        parser = BoxParser()
        with pytest.raises(LimitExceeded):
            parser.feed(b"-Length: 100000000000\r\n")

    def test_body_buffer_bounded_by_the_body(self) -> None:
        parser = BoxParser(Limits(max_body_length=1000))
        parser.feed(b"-Length: 1000\r\n\r\n")
        for _ in range(999):
            assert parser.feed(b"b") == []
            assert parser.buffered < 1000
        [box] = parser.feed(b"b" + b"A: b")
        assert box.body == b"b" * 1000
        assert parser.buffered == 4


def test_max_header_bytes_must_hold_a_whole_line() -> None:
    with pytest.raises(ValueError, match="max_header_bytes"):
        Limits(max_line_length=1000, max_header_bytes=999)


class TestHeaderBytesLimit:
    """Many long lines, each within max_line_length, cannot add up past max_header_bytes."""

    limits = Limits(max_line_length=100, max_headers=1000, max_header_bytes=1000)

    def test_within_the_limit(self) -> None:
        data = b"".join(b"K%d: %s\r\n" % (i, b"v" * 40) for i in range(20)) + b"\r\n"
        assert len(data) < 1000
        for feed in (feed_whole, feed_bytewise):
            assert len(feed(data, self.limits)[0]) == 20

    def test_over_the_limit_stops_at_once(self) -> None:
        line = b"K: " + b"v" * 90 + b"\r\n"
        parser = BoxParser(self.limits)
        with pytest.raises(LimitExceeded, match="max_header_bytes"):
            for _ in range(1000):
                parser.feed(line)
        assert parser.buffered <= 100

    def test_continuation_lines_count_too(self) -> None:
        data = b"A: x\r\n" + b" " + b"y" * 90 + b"\r\n" * 1 + b"".join(
            b" " + b"y" * 90 + b"\r\n" for _ in range(11)
        ) + b"\r\n"
        for feed in (feed_whole, feed_bytewise):
            with pytest.raises(LimitExceeded):
                feed(data, self.limits)


class TestHeaderLimit:
    limits = Limits(max_headers=5)

    def test_at_the_limit(self) -> None:
        data = b"".join(b"K%d: v\r\n" % i for i in range(5)) + b"\r\n"
        for feed in (feed_whole, feed_bytewise):
            assert len(feed(data, self.limits)[0]) == 5

    def test_over_the_limit(self) -> None:
        data = b"".join(b"K%d: v\r\n" % i for i in range(6)) + b"\r\n"
        for feed in (feed_whole, feed_bytewise):
            with pytest.raises(LimitExceeded):
                feed(data, self.limits)

    def test_continuation_lines_count(self) -> None:
        data = b"A: 1\r\n 2\r\n 3\r\n 4\r\n 5\r\n 6\r\n\r\n"
        for feed in (feed_whole, feed_bytewise):
            with pytest.raises(LimitExceeded):
                feed(data, self.limits)

    def test_empty_continuation_lines_count(self) -> None:
        data = b"A: \r\n" + b" \r\n" * 5 + b"\r\n"
        for feed in (feed_whole, feed_bytewise):
            with pytest.raises(LimitExceeded):
                feed(data, self.limits)
        with pytest.raises(LimitExceeded):
            feed_whole(b"B: c\r\n\r\n" * 60 + data, self.limits)
        ok = b"A: \r\n" + b" \r\n" * 4 + b"\r\n"
        assert content(feed_whole(ok * 60, self.limits)) == [({"a": "\r\n" * 4}, None)] * 60

    def test_repeated_keys_count(self) -> None:
        data = b"A: 1\r\n" * 6 + b"\r\n"
        with pytest.raises(LimitExceeded):
            feed_whole(data, self.limits)

    def test_limit_applies_per_box(self) -> None:
        data = (b"".join(b"K%d: v\r\n" % i for i in range(5)) + b"\r\n") * 50
        assert len(feed_whole(data, self.limits)) == 50


def test_many_continuation_lines_across_reads_join_into_one_value() -> None:
    # Continuation lines are collected and joined once per value; check the joined value,
    # the key after it, and a box that ends right after a continuation line, in odd splits.
    parts = [f"part{i}" for i in range(500)]
    data = (
        ("A: first\r\n" + "".join(f" {p}\r\n" for p in parts) + "B: next\r\n C\r\n\r\n")
        .encode()
    )
    expected = {"a": "first\r\n" + "\r\n".join(parts), "b": "next\r\nC"}
    for size in (1, 7, 64, 4096, len(data)):
        parser = BoxParser()
        boxes = [box for i in range(0, len(data), size) for box in parser.feed(data[i : i + size])]
        assert [dict(box) for box in boxes] == [expected]


@pytest.mark.parametrize("length_key", [b"-Length", b"-LENGTH", b"-length"])
def test_a_body_deep_in_a_read_of_small_boxes(length_key: bytes) -> None:
    # A read of many small boxes with a body box far into it: the boxes before the body, the
    # body box and the boxes after come out as the careful parser gives them.
    small = b"".join(b"-Answer: %x\r\nText: a\r\n b\r\n\r\n" % i for i in range(300))
    body = length_key + b": 9\r\nName: x\r\n\r\n\r\n\r\nA: \xff\xfe"
    data = small + body + small
    expected = content(feed_bytewise(data))
    assert len(expected) == 601
    assert expected[300] == ({"name": "x"}, b"\r\n\r\nA: \xff\xfe")
    assert content(feed_whole(data)) == expected
