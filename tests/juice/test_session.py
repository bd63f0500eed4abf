"""Request bookkeeping: classifying boxes, framing, tags, and dispatch to responders."""

from __future__ import annotations

from typing import Any

import pytest

from juicectl.juice import (
    UNHANDLED_CODE,
    UNHANDLED_DESCRIPTION,
    Answer,
    Box,
    BoxParser,
    Bytes,
    Command,
    ErrorAnswer,
    Integer,
    MalformedBox,
    Negotiate,
    Reply,
    Request,
    RequestTable,
    Responders,
    Shutdown,
    String,
    answer_bytes,
    classify,
    error_bytes,
    request_bytes,
)

UNHANDLED_BYTES = (
    b"-Error: %s\r\n-Error-Description: Unhandled Remote System Exception \r\n"
    b"-Error-Code: UNHANDLED\r\n\r\n"
)


class Echo(Command):
    arguments = [("value", String())]
    response = [("value", String())]


class SetStore(Command):
    arguments = [("n", Integer())]


class Upload(Command):
    arguments = [("body", Bytes())]
    response = [("size", Integer())]


class Declared(Exception):
    pass


class Fatal(Exception):
    pass


class Risky(Command):
    arguments = [("mode", String())]
    errors = {Declared: "DECLARED"}
    fatal_errors = {Fatal: "FATAL"}


class Handler:
    def __init__(self) -> None:
        self.stored: list[int] = []

    @Echo.responder
    def echo(self, value: str) -> dict[str, str]:
        return {"value": value}

    @SetStore.responder
    def set_store(self, n: int) -> None:
        self.stored.append(n)

    @Upload.responder
    def upload(self, body: bytes) -> dict[str, int]:
        return {"size": len(body)}

    @Risky.responder
    def risky(self, mode: str) -> Any:
        if mode == "declared":
            raise Declared("it went\nwrong")
        if mode == "fatal":
            raise Fatal("beyond repair")
        if mode == "undeclared":
            raise KeyError("boom")
        if mode == "not a dict":
            return ["x"]
        if mode == "bad response":
            return {"nope": 1}
        return {}

    def not_a_responder(self) -> None:
        raise AssertionError("never called")


def parse_one(data: bytes) -> Box:
    parser = BoxParser()
    [box] = parser.feed(data)
    parser.feed(b"")
    return box


class TestClassify:
    def test_request(self) -> None:
        event = classify(parse_one(b"-Command: Echo\r\n-Ask: 1f\r\nValue: a\r\n\r\n"))
        assert event == Request("Echo", "1f", Box(value="a"))

    def test_request_without_ask(self) -> None:
        assert classify(Box(_command="Echo", value="a")) == Request("Echo", None, Box(value="a"))

    def test_request_keeps_the_body_and_drops_protocol_keys(self) -> None:
        event = classify(Box(_command="Upload", _ask="2", _other="x", body=b"data"))
        assert isinstance(event, Request)
        assert event.box == Box(body=b"data")

    def test_answer(self) -> None:
        assert classify(Box(_answer="3", value="v")) == Answer("3", Box(value="v"))

    def test_error(self) -> None:
        box = Box(_error="4", _error_code="X", _error_description="d")
        assert classify(box) == ErrorAnswer("4", "X", "d")

    def test_error_without_description(self) -> None:
        assert classify(Box(_error="4", _error_code="X")) == ErrorAnswer("4", "X", "")

    def test_error_without_code(self) -> None:
        with pytest.raises(MalformedBox, match="-Error-Code"):
            classify(Box(_error="4"))

    def test_reference_order(self) -> None:
        # -Answer first, then -Error, then -Command, as the reference checks them.
        assert isinstance(classify(Box(_answer="1", _error="1", _command="X")), Answer)
        assert isinstance(classify(Box(_error="1", _error_code="C", _command="X")), ErrorAnswer)

    @pytest.mark.parametrize("box", [Box(), Box(value="x"), Box(_ask="1")])
    def test_neither(self, box: Box) -> None:
        with pytest.raises(MalformedBox):
            classify(box)


class TestFraming:
    def test_request_bytes(self) -> None:
        data = request_bytes(Echo, "fe", Echo.make_arguments({"value": "a\r\nb"}))
        assert data == b"-Command: Echo\r\n-Ask: fe\r\nValue: a\r\n b\r\n\r\n"

    def test_request_without_tag(self) -> None:
        assert request_bytes(SetStore, None, Box(n="1")) == b"-Command: SetStore\r\nN: 1\r\n\r\n"

    def test_request_with_body(self) -> None:
        data = request_bytes(Upload, "1", Upload.make_arguments({"body": b"xyz"}))
        assert data == b"-Command: Upload\r\n-Ask: 1\r\n-Length: 3\r\n\r\nxyz"

    def test_answer_bytes(self) -> None:
        assert answer_bytes("fe", Box(value="a\r\nb")) == b"Value: a\r\n b\r\n-Answer: fe\r\n\r\n"
        assert answer_bytes("1", Box()) == b"-Answer: 1\r\n\r\n"
        assert answer_bytes("1", Box(body=b"z")) == b"-Answer: 1\r\n-Length: 1\r\n\r\nz"

    def test_error_bytes(self) -> None:
        assert error_bytes("fd", UNHANDLED_CODE, UNHANDLED_DESCRIPTION) == UNHANDLED_BYTES % b"fd"

    @pytest.mark.parametrize(
        ("description", "wire"),
        [
            ("a\nb", b"a\r\n b"),
            ("a\rb", b"a\r\n b"),
            ("a\r\nb", b"a\r\n b"),
            ("a\n\rb", b"a\r\n \r\n b"),
        ],
    )
    def test_error_description_newlines_become_continuations(
        self, description: str, wire: bytes
    ) -> None:
        data = error_bytes("1", "X", description)
        assert b"-Error-Description: " + wire + b"\r\n" in data
        parse_one(data)


class TestRequestTable:
    def test_tags_are_increasing_lowercase_hex(self) -> None:
        table: RequestTable[str] = RequestTable()
        tags = [table.next_tag() for _ in range(300)]
        assert tags[:12] == ["1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c"]
        assert tags[14:17] == ["f", "10", "11"]
        assert tags[254:256] == ["ff", "100"]
        assert len(set(tags)) == 300

    def test_add_pop_drain(self) -> None:
        table: RequestTable[str] = RequestTable()
        table.add("1", Echo, "first")
        table.add("2", Negotiate, "second")
        assert len(table) == 2
        assert "1" in table
        assert table.pop("1") == (Echo, "first")
        assert table.pop("1") is None
        assert table.pop("nope") is None
        table.add("3", Echo, "third")
        assert table.drain() == ["second", "third"]
        assert len(table) == 0
        assert table.drain() == []

    def test_duplicate_tag_refused(self) -> None:
        table: RequestTable[int] = RequestTable()
        table.add("1", Echo, 1)
        with pytest.raises(ValueError, match="already outstanding"):
            table.add("1", Echo, 2)


class TestResponders:
    def handle(self, data: bytes, handler: object | None = None) -> Reply:
        event = classify(parse_one(data))
        assert isinstance(event, Request)
        responders = Responders(Handler() if handler is None else handler)
        return responders.handle(event)

    def test_echo(self) -> None:
        reply = self.handle(b"-Command: Echo\r\n-Ask: fe\r\nValue: a\r\n b\r\n\r\n")
        assert reply == Reply(b"Value: a\r\n b\r\n-Answer: fe\r\n\r\n", close=False)

    def test_negotiate_builtin(self) -> None:
        reply = self.handle(b"-Command: Negotiate\r\n-Ask: 11\r\nVersions: 1\r\n\r\n")
        assert reply == Reply(b"Version: 1\r\n-Answer: 11\r\n\r\n", close=False)
        reply = self.handle(b"-Command: Negotiate\r\n-Ask: 11\r\nVersions: 3, 1\r\n\r\n")
        assert reply.data == b"Version: 1\r\n-Answer: 11\r\n\r\n"

    def test_negotiate_without_a_common_version(self) -> None:
        reply = self.handle(b"-Command: Negotiate\r\n-Ask: 2\r\nVersions: 7\r\n\r\n")
        assert reply.data == UNHANDLED_BYTES % b"2"
        assert reply.close

    def test_builtins_off(self) -> None:
        responders = Responders(None, builtins=False)
        assert responders.lookup("Negotiate") is None
        reply = responders.handle(Request("Negotiate", "1", Box(versions="1")))
        assert reply.data == UNHANDLED_BYTES % b"1"

    def test_shutdown_is_not_builtin(self) -> None:
        assert Responders(None).lookup("Shutdown") is None
        assert Shutdown not in Responders(None).commands

    def test_unknown_command(self) -> None:
        reply = self.handle(b"-Command: Nope\r\n-Ask: fd\r\n\r\n")
        assert reply.data == UNHANDLED_BYTES % b"fd"
        assert reply.close
        assert isinstance(reply.error, LookupError)

    def test_unknown_command_without_ask(self) -> None:
        reply = self.handle(b"-Command: Nope\r\n\r\n")
        assert reply.data is None
        assert reply.close

    def test_no_ask_no_answer(self) -> None:
        handler = Handler()
        reply = self.handle(b"-Command: SetStore\r\nN: 5\r\n\r\n", handler)
        assert reply == Reply(None, close=False)
        assert handler.stored == [5]

    def test_none_result_is_an_empty_answer(self) -> None:
        reply = self.handle(b"-Command: SetStore\r\n-Ask: 7\r\nN: 5\r\n\r\n")
        assert reply == Reply(b"-Answer: 7\r\n\r\n", close=False)

    def test_body_argument(self) -> None:
        reply = self.handle(b"-Command: Upload\r\n-Ask: 1\r\n-Length: 4\r\n\r\n\x00\r\n\xff")
        assert reply.data == b"Size: 4\r\n-Answer: 1\r\n\r\n"

    @pytest.mark.parametrize(
        "name", ["Set-Store", "SET_STORE", "setstore", "SETSTORE", "set-store"]
    )
    def test_command_names_match_loosely(self, name: str) -> None:
        reply = self.handle(b"-Command: %s\r\n-Ask: 1\r\nN: 1\r\n\r\n" % name.encode())
        assert reply.data == b"-Answer: 1\r\n\r\n"

    def test_declared_error(self) -> None:
        reply = self.handle(b"-Command: Risky\r\n-Ask: 9\r\nMode: declared\r\n\r\n")
        assert reply.data == (
            b"-Error: 9\r\n-Error-Description: it went\r\n wrong\r\n-Error-Code: DECLARED\r\n\r\n"
        )
        assert not reply.close
        assert isinstance(reply.error, Declared)

    def test_fatal_error(self) -> None:
        reply = self.handle(b"-Command: Risky\r\n-Ask: 9\r\nMode: fatal\r\n\r\n")
        assert reply.data == (
            b"-Error: 9\r\n-Error-Description: beyond repair\r\n-Error-Code: FATAL\r\n\r\n"
        )
        assert reply.close
        assert isinstance(reply.error, Fatal)

    def test_declared_error_without_ask(self) -> None:
        reply = self.handle(b"-Command: Risky\r\nMode: declared\r\n\r\n")
        assert reply.data is None
        assert not reply.close
        assert isinstance(reply.error, Declared)

    @pytest.mark.parametrize("mode", ["undeclared", "not a dict", "bad response"])
    def test_unhandled_errors(self, mode: str) -> None:
        reply = self.handle(b"-Command: Risky\r\n-Ask: 9\r\nMode: %s\r\n\r\n" % mode.encode())
        assert reply.data == UNHANDLED_BYTES % b"9"
        assert reply.close
        assert reply.error is not None

    def test_bad_arguments_are_unhandled(self) -> None:
        reply = self.handle(b"-Command: SetStore\r\n-Ask: 9\r\nN: x\r\n\r\n")
        assert reply.data == UNHANDLED_BYTES % b"9"
        assert reply.close

    def test_missing_argument_is_unhandled(self) -> None:
        reply = self.handle(b"-Command: Echo\r\n-Ask: 9\r\n\r\n")
        assert reply.data == UNHANDLED_BYTES % b"9"

    def test_lookup(self) -> None:
        handler = Handler()
        responders = Responders(handler)
        entry = responders.lookup("echo")
        assert entry is not None
        command, function = entry
        assert command is Echo
        assert function == handler.echo
        assert set(responders.commands) == {Negotiate, Echo, SetStore, Upload, Risky}

    def test_handler_can_override_negotiate(self) -> None:
        class Custom:
            @Negotiate.responder
            def negotiate(self, versions: list[int]) -> dict[str, int]:
                return {"version": 99}

        reply = Responders(Custom()).handle(Request("Negotiate", "1", Box(versions="1")))
        assert reply.data == b"Version: 99\r\n-Answer: 1\r\n\r\n"

    def test_subclass_overrides_base_handler(self) -> None:
        class Base:
            @Echo.responder
            def echo(self, value: str) -> dict[str, str]:
                return {"value": "base"}

        class Derived(Base):
            @Echo.responder
            def echo_again(self, value: str) -> dict[str, str]:
                return {"value": "derived"}

        reply = Responders(Derived()).handle(Request("Echo", "1", Box(value="x")))
        assert reply.data == b"Value: derived\r\n-Answer: 1\r\n\r\n"

    def test_two_responders_for_one_command_refused(self) -> None:
        class Confused:
            @Echo.responder
            def one(self, value: str) -> None: ...

            @Echo.responder
            def two(self, value: str) -> None: ...

        with pytest.raises(TypeError, match="both answer"):
            Responders(Confused())

    def test_static_and_class_methods(self) -> None:
        class Mixed:
            @staticmethod
            @Echo.responder
            def echo(value: str) -> dict[str, str]:
                return {"value": value.upper()}

        reply = Responders(Mixed()).handle(Request("Echo", "1", Box(value="x")))
        assert reply.data == b"Value: X\r\n-Answer: 1\r\n\r\n"

    def test_ambiguous_loose_names_need_the_exact_name(self) -> None:
        class SetStoreTwo(Command):
            command_name = "Set_Store"

        class Both:
            @SetStore.responder
            def a(self, n: int) -> None: ...

            @SetStoreTwo.responder
            def b(self) -> None: ...

        responders = Responders(Both())
        assert responders.lookup("SETSTORE") is not None
        assert responders.lookup("set-store") is not None
        entry = responders.lookup("set-store")
        assert entry is not None and entry[0] is SetStoreTwo
        assert responders.lookup("SetStore ") is not None
