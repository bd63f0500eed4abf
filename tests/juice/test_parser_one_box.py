"""One small box in one read (a sequential request or answer: the commonest read of all)
takes the parser's shortest path; fed whole it must give what the careful path gives, fed
byte by byte, limits and errors included (``max_header_bytes`` from ``max_line_length`` up:
the shortest path must check both)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from juicectl.juice import Box, BoxParser, Limits, ProtocolError


def outcome(data: bytes, limits: Limits, whole: bool) -> object:
    parser = BoxParser(limits)
    boxes: list[Box] = []
    try:
        if whole:
            boxes += parser.feed(data)
        else:
            for index in range(len(data)):
                boxes += parser.feed(data[index : index + 1])
    except ProtocolError as error:
        return type(error)
    return [(dict(box), box.body) for box in boxes], parser.buffered


EDGES = [
    b"Value: a\r\n-Answer: 1\r\n\r\n",
    b"\r\n\r\n",
    b"Value: a\r\n more\r\n-Answer: 1\r\n\r\n",  # a continuation line
    b"no separator\r\n\r\n",
    b" Value: leading space\r\n\r\n",
    b"Value: a\r\nValue: b\r\n\r\n",  # a repeated key
    b"-Length: 0\r\n\r\n",
    b"Value: \xff\r\n\r\n",  # not UTF-8
]


@pytest.mark.parametrize("data", EDGES)
@pytest.mark.parametrize("max_line", [8, 10, 20, 1 << 20])
def test_whole_and_byte_by_byte_agree(data: bytes, max_line: int) -> None:
    for limits in (
        Limits(max_line_length=max_line),
        Limits(max_line_length=max_line, max_header_bytes=max_line),
        Limits(max_line_length=max_line, max_header_bytes=max_line + 2),
        Limits(max_headers=1),
    ):
        assert outcome(data, limits, True) == outcome(data, limits, False)


LINES = st.lists(
    st.tuples(
        st.sampled_from(["Value", "-Answer", "-Command", "k", "-Length"]),
        st.text(alphabet="ab é\r\n", max_size=12),
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    lines=LINES,
    max_line=st.integers(4, 40),
    extra=st.integers(0, 8),
    max_headers=st.integers(1, 5),
)
def test_any_small_box_fed_whole_agrees_with_the_careful_path(
    lines: list[tuple[str, str]], max_line: int, extra: int, max_headers: int
) -> None:
    data = b"".join(f"{key}: {value}\r\n".encode() for key, value in lines) + b"\r\n"
    limits = Limits(max_line_length=max_line, max_header_bytes=max_line + extra,
                    max_headers=max_headers)
    assert outcome(data, limits, True) == outcome(data, limits, False)
