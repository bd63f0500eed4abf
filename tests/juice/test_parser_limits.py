"""Every limit on every path: the same outcome whole, byte by byte and in random chunks.

A box is accepted or refused by what it holds, never by how its bytes arrive: a hostile peer
chooses that. Each limit is tried at its edge and one past it, on a box alone (the single-block
fast path), repeated (the whole-run fast path), right after another box and deep inside a run
of small boxes; byte by byte, every box goes through the careful line-by-line path.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from juicectl.juice import (
    Box,
    BoxParser,
    LimitExceeded,
    Limits,
    MalformedBox,
    ProtocolError,
    serialize_box,
)
from tests.juice.helpers import (
    Content,
    Outcome,
    content,
    feed_bytewise,
    feed_split,
    feed_whole,
    outcomes,
)

SMALL = b"-Answer: 1\r\nText: a\r\n b\r\n\r\n"
PLAIN = b"-Command: Echo\r\n-Ask: 2\r\nValue: hi\r\n\r\n"
SMALL_CONTENT: list[Content] = [
    ({"_answer": "1", "text": "a\r\nb"}, None),
    ({"_command": "Echo", "_ask": "2", "value": "hi"}, None),
]
#: About 1.7 KiB of small boxes: enough for the whole-run fast path (it takes reads of over
#: 1 KiB), within one of its windows, and small enough to feed byte by byte many times over.
RUN = (SMALL + PLAIN) * 24
RUN_CONTENT = SMALL_CONTENT * 24

LINE = Limits(max_line_length=100)
LINE_SHORT_BLOCK = Limits(max_line_length=600)  # past the short search, within the block window
LINE_LONG = Limits(max_line_length=5000)  # past the whole-block window
HEADER_BYTES = Limits(max_line_length=100, max_header_bytes=300)
HEADER_BYTES_TIGHT = Limits(max_line_length=100, max_header_bytes=100)
HEADERS = Limits(max_headers=5)
BODY = Limits(max_body_length=10)


def _line(size: int, key: bytes = b"A") -> bytes:
    """A header line of exactly ``size`` bytes (CRLF excluded): ``key: xxx...``."""
    return key + b": " + b"x" * (size - len(key) - 2) + b"\r\n"


def _lines(*sizes: int) -> bytes:
    """Header lines of the given sizes (CRLF excluded), each with its own key, and a blank line."""
    return b"".join(_line(size, b"K%d" % i) for i, size in enumerate(sizes)) + b"\r\n"


def _fields(*sizes: int) -> dict[str, str]:
    return {f"k{i}": "x" * (size - len(f"K{i}: ")) for i, size in enumerate(sizes)}


# (id, limits, one box's wire bytes, its content, or the error it must raise)
LIMIT_CASES: list[tuple[str, Limits, bytes, Content | type[ProtocolError]]] = [
    # max_line_length
    ("line at max_line_length", LINE, _lines(100), (_fields(100), None)),
    ("line one past max_line_length", LINE, _lines(101), LimitExceeded),
    (
        "continuation line at max_line_length",
        LINE,
        b"A: b\r\n " + b"y" * 99 + b"\r\n\r\n",
        ({"a": "b\r\n" + "y" * 99}, None),
    ),
    ("continuation line one past", LINE, b"A: b\r\n " + b"y" * 100 + b"\r\n\r\n", LimitExceeded),
    ("line at max_line_length 600", LINE_SHORT_BLOCK, _lines(600), (_fields(600), None)),
    ("line one past max_line_length 600", LINE_SHORT_BLOCK, _lines(601), LimitExceeded),
    ("line at max_line_length 5000", LINE_LONG, _lines(5000), (_fields(5000), None)),
    ("line one past max_line_length 5000", LINE_LONG, _lines(5001), LimitExceeded),
    (
        "long line after short ones, at max_line_length 600",
        LINE_SHORT_BLOCK,
        _lines(10, 20, 600),
        (_fields(10, 20, 600), None),
    ),
    ("long line after short ones, one past", LINE_SHORT_BLOCK, _lines(10, 20, 601), LimitExceeded),
    (
        "two lines, the second past max_line_length 600",
        LINE_SHORT_BLOCK,
        _lines(550, 601),
        LimitExceeded,
    ),
    (
        "two lines, the second at max_line_length 600",
        LINE_SHORT_BLOCK,
        _lines(550, 600),
        (_fields(550, 600), None),
    ),
    # Limits near the fast paths' own search sizes (512 and 516 bytes).
    ("line at max_line_length 510", Limits(max_line_length=510), _lines(510), (_fields(510), None)),
    ("line one past max_line_length 510", Limits(max_line_length=510), _lines(511), LimitExceeded),
    ("line at max_line_length 512", Limits(max_line_length=512), _lines(512), (_fields(512), None)),
    ("line one past max_line_length 512", Limits(max_line_length=512), _lines(513), LimitExceeded),
    ("line at max_line_length 513", Limits(max_line_length=513), _lines(513), (_fields(513), None)),
    ("line one past max_line_length 513", Limits(max_line_length=513), _lines(514), LimitExceeded),
    # max_header_bytes a few bytes over max_line_length: each limit binds on its own.
    (
        "line one past, header bytes to spare",
        Limits(max_line_length=100, max_header_bytes=103),
        _lines(101),
        LimitExceeded,
    ),
    (
        "header bytes one past, lines within",
        Limits(max_line_length=100, max_header_bytes=101),
        _lines(49, 49),
        LimitExceeded,
    ),
    (
        "header bytes at the limit, lines within",
        Limits(max_line_length=100, max_header_bytes=101),
        _lines(49, 48),
        (_fields(49, 48), None),
    ),
    # max_header_bytes: each line counts with its CRLF
    ("header bytes at the limit", HEADER_BYTES, _lines(98, 98, 98), (_fields(98, 98, 98), None)),
    ("header bytes one past", HEADER_BYTES, _lines(98, 98, 99), LimitExceeded),
    ("many short lines at the limit", HEADER_BYTES, _lines(*[8] * 30), (_fields(*[8] * 30), None)),
    ("many short lines one past", HEADER_BYTES, _lines(*[8] * 29, 9), LimitExceeded),
    (
        "header bytes with continuation lines at the limit",
        HEADER_BYTES,
        b"A: " + b"a" * 95 + b"\r\n " + b"b" * 97 + b"\r\nB: " + b"c" * 95 + b"\r\n\r\n",
        ({"a": "a" * 95 + "\r\n" + "b" * 97, "b": "c" * 95}, None),
    ),
    (
        "header bytes with continuation lines one past",
        HEADER_BYTES,
        b"A: " + b"a" * 95 + b"\r\n " + b"b" * 98 + b"\r\nB: " + b"c" * 95 + b"\r\n\r\n",
        LimitExceeded,
    ),
    ("one line fills max_header_bytes", HEADER_BYTES_TIGHT, _lines(98), (_fields(98), None)),
    # Within max_line_length, but with its CRLF past max_header_bytes.
    ("one line one past max_header_bytes", HEADER_BYTES_TIGHT, _lines(99), LimitExceeded),
    (
        "two lines fill max_header_bytes",
        HEADER_BYTES_TIGHT,
        _lines(48, 48),
        (_fields(48, 48), None),
    ),
    ("two lines one past max_header_bytes", HEADER_BYTES_TIGHT, _lines(49, 48), LimitExceeded),
    # max_headers: continuation lines and repeated keys count
    ("headers at the limit", HEADERS, _lines(*[4] * 5), (_fields(*[4] * 5), None)),
    ("headers one past", HEADERS, _lines(*[4] * 6), LimitExceeded),
    (
        "headers with continuation lines at the limit",
        HEADERS,
        b"A: 1\r\n 2\r\nB: 3\r\n 4\r\nC: 5\r\n\r\n",
        ({"a": "1\r\n2", "b": "3\r\n4", "c": "5"}, None),
    ),
    (
        "headers with continuation lines one past",
        HEADERS,
        b"A: 1\r\n 2\r\nB: 3\r\n 4\r\nC: 5\r\n 6\r\n\r\n",
        LimitExceeded,
    ),
    ("repeated keys at the limit", HEADERS, b"A: 1\r\n" * 4 + b"A: 2\r\n\r\n", ({"a": "2"}, None)),
    ("repeated keys one past", HEADERS, b"A: 1\r\n" * 5 + b"A: 2\r\n\r\n", LimitExceeded),
    (
        "empty continuation lines at the limit",
        HEADERS,
        b"A: \r\n" + b" \r\n" * 4 + b"\r\n",
        ({"a": "\r\n" * 4}, None),
    ),
    (
        "empty continuation lines one past",
        HEADERS,
        b"A: \r\n" + b" \r\n" * 5 + b"\r\n",
        LimitExceeded,
    ),
    (
        "headers and -Length at the limit",
        HEADERS,
        _lines(*[4] * 4)[:-2] + b"-Length: 1\r\n\r\nz",
        (_fields(*[4] * 4), b"z"),
    ),
    (
        "headers and -Length one past",
        HEADERS,
        _lines(*[4] * 5)[:-2] + b"-Length: 1\r\n\r\nz",
        LimitExceeded,
    ),
    # max_body_length
    ("body at the limit", BODY, b"-Length: 10\r\n\r\n\r\n\r\nA: b\r\n", ({}, b"\r\n\r\nA: b\r\n")),
    ("body one past", BODY, b"-Length: 11\r\n\r\n\r\n\r\nA: b\r\n\r\n", LimitExceeded),
    ("-Length: 010", BODY, b"-Length: 010\r\nN: x\r\n\r\n0123456789", ({"n": "x"}, b"0123456789")),
    ("-Length: 011", BODY, b"-Length: 011\r\n\r\n0123456789a", LimitExceeded),
    ("-LENGTH at the limit", BODY, b"-LENGTH: 10\r\n\r\n0123456789", ({}, b"0123456789")),
    ("-length one past", BODY, b"N: x\r\n-length: 11\r\n\r\n0123456789a", LimitExceeded),
    (
        "many leading zeros",
        BODY,
        b"-Length: " + b"0" * 30 + b"10\r\n\r\n0123456789",
        ({}, b"0123456789"),
    ),
    (
        "many leading zeros, one past",
        BODY,
        b"-Length: " + b"0" * 30 + b"11\r\n\r\n" + b"x" * 11,
        LimitExceeded,
    ),
    ("empty body", BODY, b"-Length: 0\r\n\r\n", ({}, b"")),
]


class Context(NamedTuple):
    """Where a case's box stands in the stream."""

    before: bytes
    copies: int
    after: bytes
    first: list[Content]
    """The boxes ``before`` gives."""
    last: list[Content]
    """The boxes ``after`` gives."""

    def stream(self, box: bytes) -> bytes:
        return self.before + box * self.copies + self.after

    def outcome(self, expected: Content | type[ProtocolError]) -> Outcome:
        """The box's error, or all the boxes of the stream."""
        if isinstance(expected, type):
            return [], expected
        return [*self.first, *[expected] * self.copies, *self.last], None


CONTEXTS: dict[str, Context] = {
    "alone": Context(b"", 1, b"", [], []),
    "repeated": Context(b"", 40, b"", [], []),
    "after a box": Context(SMALL, 1, b"", SMALL_CONTENT[:1], []),
    "after a box, before more": Context(SMALL, 1, PLAIN, SMALL_CONTENT[:1], SMALL_CONTENT[1:]),
    "deep in a run": Context(RUN, 1, RUN, RUN_CONTENT, RUN_CONTENT),
    "after empty boxes, before a run": Context(b"\r\n\r\n", 2, RUN, [({}, None)] * 2, RUN_CONTENT),
}


def _assert_same_everywhere(results: dict[str, Outcome], expected: Outcome) -> None:
    for name, result in results.items():
        if result != expected:
            got = result[1] or f"{len(result[0])} boxes"
            want = expected[1] or f"{len(expected[0])} boxes"
            pytest.fail(f"fed {name}: {got}, expected {want}")


@pytest.mark.parametrize("context", CONTEXTS.values(), ids=CONTEXTS.keys())
@pytest.mark.parametrize(
    ("limits", "box", "expected"), [c[1:] for c in LIMIT_CASES], ids=[c[0] for c in LIMIT_CASES]
)
def test_each_limit_at_its_edge_and_one_past(
    limits: Limits,
    box: bytes,
    expected: Content | type[ProtocolError],
    context: Context,
) -> None:
    _assert_same_everywhere(outcomes(context.stream(box), limits), context.outcome(expected))


def test_a_large_box_among_small_ones_with_a_tight_max_header_bytes() -> None:
    # Many small boxes in one read, one of about 470 header bytes (no line near
    # max_line_length) in the middle: refused however the bytes arrive.
    small = b"A: 1\r\n\r\n" * 200
    big = b"".join(b"K%d: %s\r\n" % (i, b"v" * 40) for i in range(10)) + b"\r\n"
    for name, result in outcomes(small + big + small, HEADER_BYTES_TIGHT).items():
        assert result == ([], LimitExceeded), f"fed {name}"
    assert len(feed_whole(small * 2, HEADER_BYTES_TIGHT)) == 400


# (id, one box's wire bytes, its content, or the error it must raise)
ODD_CASES: list[tuple[str, bytes, Content | type[ProtocolError]]] = [
    ("continuation line first", b" x: y\r\n\r\n", MalformedBox),
    ("a box of one space", b" \r\n\r\n", MalformedBox),
    ("a box of one tab", b"\t\r\n\r\n", MalformedBox),
    ("continuation line first, no colon", b" x\r\n\r\n", MalformedBox),
    ("continuation line first, then a header", b" x: y\r\nA: b\r\n\r\n", MalformedBox),
    ("name glued by a continuation", b"A\r\n : b\r\n\r\n", MalformedBox),
    ("-Length glued by a continuation", b"A\r\n -Length: 3\r\n\r\nabc", MalformedBox),
    ("NUL line glued by a continuation", b"\x00\r\n : b\r\n\r\n", MalformedBox),
    ("continuation after -Length", b"-Length: 1\r\n 2\r\n\r\nzz", MalformedBox),
    ("NUL in a value", b"A: x\x00y\r\n\r\n", ({"a": "x\x00y"}, None)),
    ("a lone LF second in a box", b"x\nA: b\r\n\r\n", ({"x\na": "b"}, None)),
    ("a line without colon-space, then one with it", b"Value hi\r\nA: b\r\n\r\n", MalformedBox),
    ("NUL in a name", b"A\x00B: v\r\n\r\n", ({"a\x00b": "v"}, None)),
    ("NUL at the end of a name", b"A\x00: v\r\n w\r\n\r\n", ({"a\x00": "v\r\nw"}, None)),
    (
        "NUL in a value with a continuation",
        b"A: x\x00y\r\n z\r\n\r\n",
        ({"a": "x\x00y\r\nz"}, None),
    ),
    (
        "colon-space in values",
        b"A: b: c\r\nD: : \r\n : f: \r\n\r\n",
        ({"a": "b: c", "d": ": \r\n: f: "}, None),
    ),
    ("non-ASCII name", "Ünï: v\r\n\r\n".encode(), ({"ünï": "v"}, None)),
    ("bad UTF-8 in a continuation", b"A: b\r\n \xff\r\n\r\n", MalformedBox),
    (
        "a repeated key in two spellings",
        b"A-B: 1\r\na_b: 2\r\nC: 3\r\n\r\n",
        ({"a_b": "2", "c": "3"}, None),
    ),
    (
        "a repeated key with continuations",
        b"A: 1\r\n 2\r\nA: 3\r\n 4\r\n\r\n",
        ({"a": "3\r\n4"}, None),
    ),
]


@pytest.mark.parametrize("context", CONTEXTS.values(), ids=CONTEXTS.keys())
@pytest.mark.parametrize(
    ("box", "expected"), [c[1:] for c in ODD_CASES], ids=[c[0] for c in ODD_CASES]
)
def test_odd_boxes_on_every_path(
    box: bytes,
    expected: Content | type[ProtocolError],
    context: Context,
) -> None:
    _assert_same_everywhere(outcomes(context.stream(box)), context.outcome(expected))


@pytest.mark.parametrize("key", [b"-Length", b"-LENGTH", b"-length", b"-LeNgTh"])
@pytest.mark.parametrize("index", [0, 1, 3, 12, 24])
def test_an_ascii_body_inside_a_run_of_small_boxes(key: bytes, index: int) -> None:
    # The body looks like boxes: read as header lines, it would give other boxes.
    body = b"\r\n\r\nA: b\r\n\r\n"
    box = key + b": %d\r\nName: x\r\n\r\n" % len(body) + body
    data = RUN[: index * len(SMALL + PLAIN)] + box + RUN
    expected = [*RUN_CONTENT[: 2 * index], ({"name": "x"}, body), *RUN_CONTENT]
    _assert_same_everywhere(outcomes(data), (expected, None))


def test_boxes_with_continuations_and_colons_in_a_long_run() -> None:
    boxes = [
        Box({"_answer": format(i, "x"), "text": f"a: b\r\n: c{i}\r\n\r\nend", "k": ": "})
        for i in range(300)
    ]
    data = b"".join(map(serialize_box, boxes))
    _assert_same_everywhere(outcomes(data), (content(boxes), None))
    # Colon-space before a continuation line: the line splits at its first ": " only.
    boxes = [Box({"_answer": format(i, "x"), "m": f"x: y\r\nz{i}"}) for i in range(300)]
    data = b"".join(map(serialize_box, boxes))
    _assert_same_everywhere(outcomes(data), (content(boxes), None))


def test_a_read_over_32_kib_whose_second_window_ends_inside_a_box() -> None:
    # The whole-run path takes 16 KiB windows, each cut after its last complete box.
    boxes = [Box({"_answer": format(i, "x"), "value": "v" * (i * 37 % 300)}) for i in range(400)]
    wire = [serialize_box(box) for box in boxes]
    ends = [sum(map(len, wire[: i + 1])) for i in range(len(wire))]
    first_cut = max(end for end in ends if end <= 16384)
    assert first_cut + 16384 < ends[-1] and first_cut + 16384 not in ends
    _assert_same_everywhere(outcomes(b"".join(wire)), (content(boxes), None))


def test_leading_empty_boxes_then_a_run() -> None:
    data = b"\r\n" * 3 + RUN + b"\r\n" + RUN
    _assert_same_everywhere(
        outcomes(data), ([({}, None)] * 3 + RUN_CONTENT + [({}, None)] + RUN_CONTENT, None)
    )


def test_max_headers_across_a_run_with_continuations_and_repeated_keys() -> None:
    at_limit = b"A: 1\r\n 2\r\nA: 3\r\n 4\r\nB: 5\r\n\r\n"
    past = b"A: 1\r\n 2\r\nA: 3\r\n 4\r\nB: 5\r\n 6\r\n\r\n"
    ok = at_limit * 200
    _assert_same_everywhere(
        outcomes(ok, HEADERS), ([({"a": "3\r\n4", "b": "5"}, None)] * 200, None)
    )
    _assert_same_everywhere(outcomes(ok + past + ok, HEADERS), ([], LimitExceeded))


@pytest.mark.parametrize(
    "limits", [LINE, LINE_SHORT_BLOCK, LINE_LONG], ids=lambda limits: str(limits.max_line_length)
)
def test_a_line_one_past_max_line_length_followed_by_more_data(limits: Limits) -> None:
    # The line's CRLF and more boxes are in the same read: the whole-block fast path must not
    # take the line for a block within its window.
    size = limits.max_line_length
    long_line = b"A: " + b"x" * (size - 2) + b"\r\n"
    for tail in (b"\r\n", b"B: c\r\n\r\n", b"\r\n" + RUN):
        for name, result in outcomes(long_line + tail, limits).items():
            assert result == ([], LimitExceeded), f"fed {name}, then {tail[:10]!r}"
    at_limit = b"A: " + b"x" * (size - 3) + b"\r\n\r\n"
    expected = ([({"a": "x" * (size - 3)}, None)] * 3 + RUN_CONTENT, None)
    _assert_same_everywhere(outcomes(at_limit * 3 + RUN, limits), expected)


@pytest.mark.parametrize("before", [b"", SMALL, RUN], ids=["alone", "after a box", "after a run"])
def test_a_line_of_max_line_length_cut_between_cr_and_lf(before: bytes) -> None:
    line = b"A: " + b"x" * 97 + b"\r\n"
    data = before + line + b"\r\n" + PLAIN
    cr = len(before) + len(line) - 2
    expected = [*content(feed_bytewise(before)), ({"a": "x" * 97}, None), *SMALL_CONTENT[1:]]
    for cuts in ([cr], [cr + 1], [cr, cr + 1], [cr + 1, cr + 2], [cr - 1, cr + 1]):
        assert content(feed_split(data, cuts, LINE)) == expected, f"cut at {cuts}"


def test_header_limits_start_again_for_each_box() -> None:
    # Header count and bytes at their limits in box after box: the counts are per box.
    limits = Limits(max_line_length=100, max_headers=3, max_header_bytes=300)
    box = _lines(98, 98, 98)
    results = outcomes(SMALL + box + box + SMALL + box, limits)
    fields = (_fields(98, 98, 98), None)
    _assert_same_everywhere(
        results, ([SMALL_CONTENT[0], fields, fields, SMALL_CONTENT[0], fields], None)
    )


@pytest.mark.parametrize("before", [b"", b"A: 1\r\n\r\n"], ids=["at the start", "after a box"])
def test_a_partial_box_after_a_run_waits_for_the_rest(before: bytes) -> None:
    parser = BoxParser()
    boxes = parser.feed(before + RUN + b"Partial: x")
    assert content(boxes) == content(feed_whole(before)) + RUN_CONTENT
    assert parser.buffered == len(b"Partial: x")
    assert content(parser.feed(b"yz\r\n\r\n")) == [({"partial": "xyz"}, None)]
    assert parser.feed(b"") == []


def test_max_headers_reached_only_through_continuation_lines_in_a_run() -> None:
    # Boxes without continuations around one whose continuation lines take it past
    # max_headers: the run may not count them for less than they are.
    limits = Limits(max_headers=10)
    plain = b"-Answer: 1\r\nValue: v\r\n\r\n" * 60
    keys = b"".join(b"K%d: v\r\n" % i for i in range(5))
    at_limit = keys + b"A: 1\r\n 2\r\n 3\r\n 4\r\n 5\r\n\r\n"  # 6 keys + 4 continuations
    past = keys + b"A: 1\r\n 2\r\n 3\r\n 4\r\n 5\r\nB: x\r\n\r\n"
    plain_content: list[Content] = [({"_answer": "1", "value": "v"}, None)] * 60
    fields = {f"k{i}": "v" for i in range(5)} | {"a": "1\r\n2\r\n3\r\n4\r\n5"}
    _assert_same_everywhere(
        outcomes(plain + at_limit + plain, limits),
        ([*plain_content, (fields, None), *plain_content], None),
    )
    _assert_same_everywhere(outcomes(plain + past + plain, limits), ([], LimitExceeded))


@pytest.mark.parametrize("limits", [HEADER_BYTES, HEADER_BYTES_TIGHT], ids=["300", "100"])
def test_header_bytes_in_a_run_with_a_body_further_on(limits: Limits) -> None:
    # The run path also looks ahead for a body: what it finds there may not widen its window.
    past = _lines(98, 98, 99) if limits is HEADER_BYTES else _lines(49, 48)
    body = b"-Length: 1\r\n\r\nz"
    results = outcomes(RUN + past + RUN + body, limits)
    _assert_same_everywhere(results, ([], LimitExceeded))


def test_colon_space_in_values_of_a_run_without_continuations() -> None:
    boxes = [Box({"_answer": format(i, "x"), "k": f"a: b: {i}", "e": ": "}) for i in range(200)]
    data = b"".join(map(serialize_box, boxes))
    _assert_same_everywhere(outcomes(data), (content(boxes), None))


def test_header_limits_start_again_after_a_body() -> None:
    limits = Limits(max_line_length=100, max_headers=3, max_header_bytes=300)
    box = _lines(98, 98, 98)
    body = b"-Length: 3\r\n\r\nA: "
    fields = (_fields(98, 98, 98), None)
    results = outcomes(body + box + body + box, limits)
    _assert_same_everywhere(results, ([({}, b"A: "), fields, ({}, b"A: "), fields], None))


def test_reads_of_boxes_made_of_white_space() -> None:
    # Long enough for the whole-run path: empty boxes are boxes, a tab is no header.
    _assert_same_everywhere(outcomes(b"\r\n" * 600), ([({}, None)] * 600, None))
    _assert_same_everywhere(outcomes(b"\t\r\n\r\n" * 300), ([], MalformedBox))
    _assert_same_everywhere(outcomes(b"A: b\r\n\r\n" * 200 + b"\t\r\n\r\n"), ([], MalformedBox))
