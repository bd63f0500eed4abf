"""Refusing, before writing, what the peer's parser would refuse: the sizes are the parser's.

Each limit is met exactly (the box goes, and the parser takes it) and then passed by one byte
(the sender refuses it, and the same bytes written anyway break the parser). A property test
then checks, for random boxes and small limits, that the sender refuses exactly what the
parser's careful path (fed byte by byte) refuses.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from juicectl.juice import (
    LIMIT_EXCEEDED_CODE,
    Box,
    BoxParser,
    Command,
    ErrorAnswer,
    LimitExceeded,
    Limits,
    Request,
    Responders,
    String,
    answer_bytes,
    classify,
    error_bytes,
    request_bytes,
)


class Put(Command):
    arguments = [("value", String())]
    response = [("value", String())]


class Fetch(Command):
    """Answered with a value the test chooses: the responder is the worker's side."""

    response = [("value", String())]
    errors = {ValueError: "BAD"}


def parses(data: bytes, limits: Limits) -> bool:
    """Whether the parser's careful path (fed byte by byte) takes ``data`` within ``limits``."""
    parser = BoxParser(limits)
    try:
        for index in range(len(data)):
            parser.feed(data[index : index + 1])
    except LimitExceeded:
        return False
    return True


def request_fits(box: Box, limits: Limits, tag: str | None = "1f") -> bool:
    try:
        request_bytes(Put, tag, box, limits)
    except LimitExceeded:
        return False
    return True


# (limits, a box at the limit, the same box one byte past it)
LINE = Limits(max_line_length=64, max_header_bytes=4096)
CASES = {
    # "Value: " is 7 bytes: 57 characters make a 64-byte line.
    "ascii line": (LINE, Box(value="v" * 57), Box(value="v" * 58)),
    # "é" is 2 bytes in UTF-8: the line is measured in bytes, not characters.
    "utf-8 line": (LINE, Box(value="é" * 28 + "v"), Box(value="é" * 29)),
    # A continuation line is " " and the rest: its own line, measured alone.
    "continuation line": (
        LINE,
        Box(value="a\r\n" + "c" * 63),
        Box(value="a\r\n" + "c" * 64),
    ),
    # -Command, -Ask and 2 lines of the value: 4 lines.
    "header count": (
        Limits(max_headers=4),
        Box(value="a\r\nb"),
        Box(value="a\r\nb\r\nc"),
    ),
    # -Command: Put (13 + 2), -Ask: 1f (8 + 2), then fields of 10 + 2 bytes each.
    "header bytes": (
        Limits(max_line_length=64, max_header_bytes=25 + 12 * 5),
        Box({f"k{i}": "v" * 6 for i in range(5)}),
        Box({f"k{i}": "v" * 6 for i in range(4)} | {"k4": "v" * 7}),
    ),
    # The body's -Length line counts as a header line and toward the header bytes.
    "body length": (
        Limits(max_body_length=10),
        Box(body=b"b" * 10),
        Box(body=b"b" * 11),
    ),
    "body's -Length line": (
        Limits(max_line_length=32, max_header_bytes=25 + 12),
        Box(body=b"b" * 9),  # "-Length: 9" + CRLF: 12 bytes
        Box(body=b"b" * 10),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_request_at_a_limit_goes_one_byte_more_is_refused(case: str) -> None:
    limits, fits, too_big = CASES[case]
    data = request_bytes(Put, "1f", fits, limits)
    assert parses(data, limits) and BoxParser(limits).feed(data)
    with pytest.raises(LimitExceeded):
        request_bytes(Put, "1f", too_big, limits)
    # What was refused is what the parser would have refused, had it been written.
    assert not parses(request_bytes(Put, "1f", too_big), limits)


def test_the_refusal_names_the_field_its_size_the_limit_and_the_body() -> None:
    with pytest.raises(LimitExceeded) as refused:
        request_bytes(Put, "1", Box(value="x" * 2_000_000), Limits())
    message = str(refused.value)
    assert message.startswith("Put not sent:")
    assert "'value'" in message and "2,000,000 bytes" in message
    assert "max_line_length (1,048,576 bytes)" in message
    assert "body" in message


def test_a_body_too_long_says_so() -> None:
    with pytest.raises(LimitExceeded, match=r"body is 11 bytes, over max_body_length \(10"):
        request_bytes(Put, "1", Box(body=b"b" * 11), Limits(max_body_length=10))


def test_too_many_line_breaks_are_refused_by_count_without_measuring_each() -> None:
    value = "\r\n".join(["a"] * 10_000)
    with pytest.raises(LimitExceeded, match=r"9,999 line breaks.*max_headers \(4,096\)"):
        request_bytes(Put, "1", Box(value=value), Limits())


def test_a_request_without_a_tag_is_checked_too() -> None:
    with pytest.raises(LimitExceeded):
        request_bytes(Put, None, Box(value="v" * 60), LINE)


def test_without_limits_nothing_is_checked() -> None:
    data = request_bytes(Put, "1", Box(value="v" * 100), None)
    assert not parses(data, LINE)


def test_values_that_are_not_text_are_left_to_the_serializer() -> None:
    from juicectl.juice import SerializationError

    with pytest.raises(SerializationError):
        request_bytes(Put, "1", Box(value=5), Limits())  # type: ignore[arg-type]


def test_an_answer_at_the_limit_goes_one_byte_more_is_refused() -> None:
    # "Value: " + 57 characters: 64 bytes; -Answer: 1f is the frame's line.
    data = answer_bytes("1f", Box(value="v" * 57), LINE)
    assert parses(data, LINE)
    with pytest.raises(LimitExceeded, match="the answer was not sent"):
        answer_bytes("1f", Box(value="v" * 58), LINE)
    assert not parses(answer_bytes("1f", Box(value="v" * 58)), LINE)


def test_an_error_description_too_long_is_cut_to_fit() -> None:
    limits = Limits(max_line_length=1024, max_header_bytes=1024, max_headers=16)
    long_text = "é" * 5000
    data = error_bytes("1", "BAD", long_text, limits)
    assert parses(data, limits)
    [box] = BoxParser(limits).feed(data)
    error = classify(box)
    assert isinstance(error, ErrorAnswer)
    assert error.description.startswith("é" * 100)
    assert error.description.endswith("more characters not sent]")
    many_lines = "\n".join(["line"] * 100)
    data = error_bytes("1", "BAD", many_lines, limits)
    assert parses(data, limits)
    # A description that fits is sent whole.
    assert classify(BoxParser().feed(error_bytes("1", "BAD", "short", limits))[0]) == (
        ErrorAnswer("1", "BAD", "short")
    )


def test_a_cut_never_splits_a_crlf() -> None:
    limits = Limits(max_line_length=100, max_header_bytes=4096)
    for shift in range(4):
        text = "x" * shift + "\r\n".join(["ab"] * 40)
        assert parses(error_bytes("1", "BAD", text, limits), limits)


class Worker:
    def __init__(self) -> None:
        self.value = ""
        self.error = ""

    @Fetch.responder
    def fetch(self) -> dict[str, str]:
        if self.error:
            raise ValueError(self.error)
        return {"value": self.value}


def test_a_responder_answer_past_the_limits_becomes_an_error_and_the_conversation_goes_on() -> None:
    worker = Worker()
    limits = Limits(max_line_length=1024)
    responders = Responders(worker, limits=limits)
    worker.value = "v" * 1018  # "Value: " and 1,018 characters: 1,025 bytes
    reply = responders.handle(Request("Fetch", "1", Box()))
    assert not reply.close and isinstance(reply.error, LimitExceeded)
    assert reply.data is not None and parses(reply.data, limits)
    error = classify(BoxParser().feed(reply.data)[0])
    assert isinstance(error, ErrorAnswer) and error.code == LIMIT_EXCEEDED_CODE
    assert error.description.startswith("Fetch: the answer was not sent: field 'value'")
    assert "max_line_length (1,024 bytes)" in error.description
    worker.value = "v" * 1017
    reply = responders.handle(Request("Fetch", "2", Box()))
    assert reply.error is None and reply.data == answer_bytes("2", Box(value="v" * 1017))


def test_a_declared_error_with_a_huge_message_is_sent_cut_short() -> None:
    worker = Worker()
    worker.error = "e" * 100_000
    limits = Limits(max_line_length=4096, max_header_bytes=4096)
    reply = Responders(worker, limits=limits).handle(Request("Fetch", "1", Box()))
    assert not reply.close and reply.data is not None and parses(reply.data, limits)
    error = classify(BoxParser().feed(reply.data)[0])
    assert isinstance(error, ErrorAnswer) and error.code == "BAD"


# Keys that stay distinct once normalised; values with line breaks and wide characters.
KEYS = st.sampled_from(["a", "bb", "ccc", "dddd", "Ünï"])
VALUES = st.lists(st.sampled_from(["v", "é", "日", "🎉", "\r\n", " "]), max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(KEYS, VALUES, max_size=4),
    body=st.none() | st.binary(max_size=24),
    tag=st.none() | st.sampled_from(["1", "ff", "10000"]),
    max_line=st.integers(12, 100),
    max_headers=st.integers(1, 12),
    extra_bytes=st.integers(0, 200),
    max_body=st.integers(1, 24),
)
def test_the_sender_refuses_exactly_what_the_parser_refuses(
    fields: dict[str, str], body: bytes | None, tag: str | None, max_line: int,
    max_headers: int, extra_bytes: int, max_body: int,
) -> None:
    limits = Limits(max_line_length=max_line, max_headers=max_headers,
                    max_header_bytes=max_line + extra_bytes, max_body_length=max_body)
    box = Box(fields, body=body)
    assert request_fits(box, limits, tag) == parses(request_bytes(Put, tag, box), limits)
    try:
        answer_bytes("1f", box, limits)
        answer_fits = True
    except LimitExceeded:
        answer_fits = False
    assert answer_fits == parses(answer_bytes("1f", box), limits)
