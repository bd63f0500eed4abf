"""Interoperation with the reference peer, Divmod Epsilon's ``juice``, in-process.

Both directions with generated boxes (our bytes parsed by ``epsilon.juice.parseString``,
``JuiceBox.serialize()`` bytes parsed by our ``BoxParser``), the observed transcripts byte for
byte, and whole request/answer exchanges with an epsilon ``Juice`` protocol on an in-memory
transport.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from juicectl.juice import (
    Answer,
    Box,
    BoxList,
    Command,
    ErrorAnswer,
    Integer,
    ListOf,
    Negotiate,
    Request,
    Responders,
    String,
    answer_bytes,
    classify,
    error_bytes,
    request_bytes,
    serialize_box,
)
from tests.juice.helpers import SETTINGS, content, feed_whole, keys, line_text, values

pytestmark = pytest.mark.interop

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    ejuice = pytest.importorskip("epsilon.juice")
    testing = pytest.importorskip("twisted.internet.testing")


def reference_content(boxes: list[dict[str, str]]) -> list[tuple[dict[str, str], bytes | None]]:
    """Epsilon's boxes in our terms: its 'body' field is our body (it decodes it as text)."""
    result = []
    for box in boxes:
        fields = dict(box)
        body = fields.pop("body", None)
        result.append((fields, None if body is None else body.encode()))
    return result


utf8_bodies = st.one_of(st.none(), line_text.map(str.encode), values.map(str.encode))


@st.composite
def our_boxes(draw: Any) -> Box:
    body = draw(utf8_bodies)
    # The reference skips a body of length 0 entirely: send only non-empty bodies to it.
    return Box(draw(st.dictionaries(keys, values, max_size=6)), body=body or None)


@SETTINGS
@given(st.lists(our_boxes(), min_size=1, max_size=5))
def test_our_bytes_parsed_by_the_reference(items: list[Box]) -> None:
    stream = b"".join(map(serialize_box, items))
    assert reference_content(ejuice.parseString(stream)) == content(items)


# Whatever the reference can write without ambiguity: any text value (lone CR or LF included:
# it writes them raw), ASCII bodies (it announces the body's length in characters).
reference_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
ascii_bodies = st.one_of(st.none(), st.text(st.characters(max_codepoint=127), min_size=1))


@SETTINGS
@given(
    st.lists(
        st.tuples(st.dictionaries(keys, reference_values, max_size=6), ascii_bodies),
        min_size=1,
        max_size=5,
    )
)
def test_reference_bytes_parsed_by_us(items: list[tuple[dict[str, str], str | None]]) -> None:
    stream = b""
    for fields, body in items:
        reference_box = ejuice.JuiceBox(**fields)
        if body is not None:
            reference_box["body"] = body
        stream += reference_box.serialize()
    expected = [(fields, None if body is None else body.encode()) for fields, body in items]
    assert content(feed_whole(stream)) == expected
    assert reference_content(ejuice.parseString(stream)) == expected


@SETTINGS
@given(st.dictionaries(keys, values, max_size=6))
def test_same_bytes_as_the_reference(fields: dict[str, str]) -> None:
    assert serialize_box(Box(fields)) == ejuice.JuiceBox(**fields).serialize()


class Echo(Command):
    arguments = [("value", String())]
    response = [("value", String())]


ECHO_REQUEST = b"-Command: Echo\r\n-Ask: fe\r\nValue: a\r\n b\r\n\r\n"
ECHO_ANSWER = b"Value: a\r\n b\r\n-Answer: fe\r\n\r\n"
NEGOTIATE_REQUEST = b"-Command: Negotiate\r\n-Ask: 11\r\nVersions: 1\r\n\r\n"
NEGOTIATE_ANSWER = b"Version: 1\r\n-Answer: 11\r\n\r\n"
NOPE_REQUEST = b"-Command: Nope\r\n-Ask: fd\r\n\r\n"
NOPE_ANSWER = (
    b"-Error: fd\r\n-Error-Description: Unhandled Remote System Exception \r\n"
    b"-Error-Code: UNHANDLED\r\n\r\n"
)


class TestTranscripts:
    """The transcripts observed with the reference child, byte for byte."""

    def test_requests(self) -> None:
        assert request_bytes(Echo, "fe", Echo.make_arguments({"value": "a\r\nb"})) == ECHO_REQUEST
        arguments = Negotiate.make_arguments({"versions": [1]})
        assert request_bytes(Negotiate, "11", arguments) == NEGOTIATE_REQUEST
        assert request_bytes(type("Nope", (Command,), {}), "fd", Box()) == NOPE_REQUEST

    def test_answers(self) -> None:
        assert answer_bytes("fe", Echo.make_response({"value": "a\r\nb"})) == ECHO_ANSWER
        assert answer_bytes("11", Negotiate.make_response({"version": 1})) == NEGOTIATE_ANSWER
        assert error_bytes("fd", "UNHANDLED", "Unhandled Remote System Exception ") == NOPE_ANSWER

    @pytest.mark.parametrize(
        ("request_data", "answer", "close"),
        [
            (ECHO_REQUEST, ECHO_ANSWER, False),
            (NEGOTIATE_REQUEST, NEGOTIATE_ANSWER, False),
            (NOPE_REQUEST, NOPE_ANSWER, True),
        ],
    )
    def test_our_responders_answer_like_the_reference_child(
        self, request_data: bytes, answer: bytes, close: bool
    ) -> None:
        class Child:
            @Echo.responder
            def echo(self, value: str) -> dict[str, str]:
                return {"value": value}

        [box] = feed_whole(request_data)
        event = classify(box)
        assert isinstance(event, Request)
        reply = Responders(Child()).handle(event)
        assert (reply.data, reply.close) == (answer, close)

    def test_reference_parses_the_transcripts_like_us(self) -> None:
        for data in (
            ECHO_REQUEST,
            ECHO_ANSWER,
            NEGOTIATE_REQUEST,
            NEGOTIATE_ANSWER,
            NOPE_REQUEST,
            NOPE_ANSWER,
        ):
            assert content(feed_whole(data)) == reference_content(ejuice.parseString(data))


# -- whole exchanges with an epsilon Juice protocol over an in-memory transport -------------


class ReferenceEcho(ejuice.Command):  # type: ignore[misc]
    commandName = "Echo"
    arguments = [("value", ejuice.String())]
    response = [("value", ejuice.String())]


class ReferenceRows(ejuice.Command):  # type: ignore[misc]
    commandName = "Rows"
    arguments = [
        ("rows", ejuice.JuiceList([("name", ejuice.String()), ("size", ejuice.Integer())])),
        ("numbers", ejuice.ListOf(ejuice.Integer())),
    ]
    response = [("total", ejuice.Integer())]


class Rows(Command):
    arguments = [
        ("rows", BoxList([("name", String()), ("size", Integer())])),
        ("numbers", ListOf(Integer())),
    ]
    response = [("total", Integer())]


class ReferenceBroken(ejuice.Command):  # type: ignore[misc]
    commandName = "Broken"


class ReferencePeer(ejuice.Juice):  # type: ignore[misc]
    def command_ECHO(self, value: str) -> dict[str, str]:
        return {"value": value}

    command_ECHO.command = ReferenceEcho

    def command_ROWS(self, rows: list[dict[str, Any]], numbers: list[int]) -> dict[str, int]:
        return {"total": sum(row["size"] for row in rows) + sum(numbers)}

    command_ROWS.command = ReferenceRows


def reference_peer() -> tuple[Any, Any]:
    transport = testing.StringTransport()
    peer = ReferencePeer(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer.makeConnection(transport)
    return peer, transport


class TestExchanges:
    @SETTINGS
    @given(values)
    def test_we_ask_the_reference_answers(self, value: str) -> None:
        peer, transport = reference_peer()
        peer.dataReceived(request_bytes(Echo, "1", Echo.make_arguments({"value": value})))
        [box] = feed_whole(transport.value())
        event = classify(box)
        assert isinstance(event, Answer) and event.tag == "1"
        assert Echo.parse_response(event.box) == {"value": value}

    def test_box_list_and_list_of_to_the_reference(self) -> None:
        peer, transport = reference_peer()
        arguments = Rows.make_arguments(
            {"rows": [{"name": "a\r\nb", "size": 2}, {"name": "", "size": 3}], "numbers": [4, 5]}
        )
        peer.dataReceived(request_bytes(Rows, "a", arguments))
        [box] = feed_whole(transport.value())
        event = classify(box)
        assert isinstance(event, Answer)
        assert Rows.parse_response(event.box) == {"total": 14}

    def test_reference_asks_we_answer(self) -> None:
        peer, transport = reference_peer()
        results: list[Any] = []
        ReferenceEcho(value="x\r\ny").do(peer).addBoth(results.append)
        ReferenceRows(rows=[{"name": "n", "size": 1}], numbers=[2, 3]).do(peer).addBoth(
            results.append
        )

        class Ours:
            @Echo.responder
            def echo(self, value: str) -> dict[str, str]:
                return {"value": value.upper()}

            @Rows.responder
            def rows(self, rows: list[dict[str, Any]], numbers: list[int]) -> dict[str, int]:
                assert rows == [{"name": "n", "size": 1}]
                return {"total": sum(numbers) + rows[0]["size"]}

        responders = Responders(Ours())
        for box in feed_whole(transport.value()):
            event = classify(box)
            assert isinstance(event, Request)
            reply = responders.handle(event)
            assert reply.data is not None and not reply.close
            peer.dataReceived(reply.data)
        assert results == [{"value": "X\r\nY"}, {"total": 6}]

    def test_reference_gets_our_errors(self) -> None:
        peer, transport = reference_peer()
        failures: list[Any] = []
        ReferenceBroken().do(peer).addErrback(failures.append)
        [box] = feed_whole(transport.value())
        event = classify(box)
        assert isinstance(event, Request)
        reply = Responders(None).handle(event)
        assert reply.close
        assert reply.data is not None
        peer.dataReceived(reply.data)
        [failure] = failures
        assert failure.check(ejuice.UnhandledRemoteJuiceError)
        assert failure.value.description == "Unhandled Remote System Exception "

    def test_reference_unhandled_reaches_us_and_it_hangs_up(self) -> None:
        peer, transport = reference_peer()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peer.dataReceived(NOPE_REQUEST)
        assert transport.value() == NOPE_ANSWER
        assert transport.disconnecting
        [box] = feed_whole(transport.value())
        event = classify(box)
        assert event == ErrorAnswer("fd", "UNHANDLED", "Unhandled Remote System Exception ")
        error = Echo.error_from_code(event.code, event.description)
        assert error.__class__.__name__ == "UnhandledRemoteJuiceError"

    def test_negotiate_with_the_reference(self) -> None:
        peer, transport = reference_peer()
        peer.dataReceived(NEGOTIATE_REQUEST)
        assert transport.value() == NEGOTIATE_ANSWER

    def test_bodies_to_the_reference(self) -> None:
        class Store(Command):
            arguments = [("name", String()), ("body", String())]
            response = [("name", String()), ("body", String())]

        class ReferenceStore(ejuice.Command):  # type: ignore[misc]
            commandName = "Store"
            arguments = [("name", ejuice.String()), ("body", ejuice.String())]
            response = [("name", ejuice.String()), ("body", ejuice.String())]

        class Peer(ReferencePeer):
            def command_STORE(self, name: str, body: str) -> dict[str, str]:
                return {"name": name, "body": body * 2}

            command_STORE.command = ReferenceStore

        transport = testing.StringTransport()
        peer = Peer(False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peer.makeConnection(transport)
        arguments = Store.make_arguments({"name": "n", "body": "ab\r\n\r\ncd"})
        peer.dataReceived(request_bytes(Store, "1", arguments))
        [box] = feed_whole(transport.value())
        event = classify(box)
        assert isinstance(event, Answer)
        assert Store.parse_response(event.box) == {"name": "n", "body": "ab\r\n\r\ncd" * 2}
