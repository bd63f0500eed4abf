"""Tags are written as they came: a tag with a CRLF (a peer's continuation line) is escaped
like any value, one with a lone CR or LF is refused, never written raw."""

from __future__ import annotations

import pytest

from juicectl.juice import (
    Answer,
    Box,
    BoxParser,
    Command,
    Request,
    SerializationError,
    String,
    answer_bytes,
    classify,
    request_bytes,
)


class Echo(Command):
    arguments = [("value", String())]


def test_a_tag_with_crlf_round_trips_in_a_request_and_its_answer() -> None:
    tag = "a\r\nb"
    request = classify(BoxParser().feed(request_bytes(Echo, tag, Box(value="v")))[0])
    assert isinstance(request, Request)
    assert request.tag == tag
    answer = classify(BoxParser().feed(answer_bytes(tag, Box(value="v")))[0])
    assert isinstance(answer, Answer)
    assert answer.tag == tag


@pytest.mark.parametrize("tag", ["a\rb", "a\nb"])
def test_a_tag_with_a_lone_cr_or_lf_is_refused(tag: str) -> None:
    with pytest.raises(SerializationError):
        request_bytes(Echo, tag, Box(value="v"))
    with pytest.raises(SerializationError):
        answer_bytes(tag, Box(value="v"))


@pytest.mark.parametrize("body", [None, b"raw"])
def test_a_request_that_cannot_be_encoded_is_refused(body: bytes | None) -> None:
    with pytest.raises(SerializationError, match="UTF-8"):
        request_bytes(Echo, "1", Box(value="\ud800", body=body))
