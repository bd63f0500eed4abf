"""Commands: names, argument and response boxes, body fields, error mapping, ``do``."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from juicectl.juice import (
    ArgumentError,
    Boolean,
    Box,
    BoxList,
    Bytes,
    Command,
    Float,
    Integer,
    ListOf,
    Negotiate,
    Path,
    RemoteJuiceError,
    Shutdown,
    String,
    UnhandledRemoteJuiceError,
    Unicode,
    command_key,
)


class Echo(Command):
    arguments = [("value", String())]
    response = [("value", String())]


class Full(Command):
    command_name = "Full-Test"
    arguments = [
        ("text", String()),
        ("uni", Unicode()),
        ("number", Integer()),
        ("ratio", Float()),
        ("flag", Boolean()),
        ("blob", Bytes()),
        ("where", Path()),
        ("numbers", ListOf(Integer())),
        ("rows", BoxList([("name", String()), ("size", Integer())])),
        ("maybe", Integer(optional=True)),
    ]
    response = [("ok", Boolean()), ("note", String(optional=True))]


FULL_KWARGS: dict[str, Any] = {
    "text": "a\r\nb",
    "uni": "✓",
    "number": -3,
    "ratio": 2.5,
    "flag": True,
    "blob": b"\x00\x01",
    "where": pathlib.Path("/srv/x"),
    "numbers": [1, 2],
    "rows": [{"name": "n", "size": 1}],
}


class StoreBlob(Command):
    arguments = [("name", String()), ("body", Bytes())]
    response = [("body", String())]


class Oops(Exception):
    pass


class Subtle(Oops):
    pass


class Broken(Exception):
    pass


class NeedsTwoArgs(Exception):
    def __init__(self, a: str, b: str) -> None:
        super().__init__(a, b)


class Risky(Command):
    errors = {Oops: "OOPS", NeedsTwoArgs: "TWO"}
    fatal_errors = {Broken: "BROKEN"}


def test_command_name_defaults_to_class_name() -> None:
    assert Echo.command_name == "Echo"
    assert Full.command_name == "Full-Test"

    class Sub(Echo):
        pass

    assert Sub.command_name == "Sub"  # each class is its own command


def test_builtins() -> None:
    assert Negotiate.command_name == "Negotiate"
    assert Negotiate.make_arguments({"versions": [1]}) == {"versions": "1"}
    assert Negotiate.parse_response(Box(version="1")) == {"version": 1}
    assert Shutdown.command_name == "Shutdown"
    assert Shutdown.make_arguments({}) == {}
    assert Shutdown.make_response({}) == {}
    assert Shutdown.requires_answer


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Set-Store", "set_store"),
        ("SET_STORE", "set_store"),
        ("set_store", "set_store"),
        (" Echo ", "echo"),
        ("SetStore", "setstore"),
    ],
)
def test_command_key(name: str, key: str) -> None:
    assert command_key(name) == key


def test_make_and_parse_arguments_all_types() -> None:
    box = Full.make_arguments(FULL_KWARGS)
    assert box == {
        "text": "a\r\nb",
        "uni": "✓",
        "number": "-3",
        "ratio": "2.5",
        "flag": "True",
        "blob": "AAE=",
        "where": "/srv/x",
        "numbers": "1, 2",
        "rows": "Name: n\r\nSize: 1\r\n\r\n",
    }
    assert Full.parse_arguments(box) == {**FULL_KWARGS, "maybe": None}


def test_optional_given() -> None:
    box = Full.make_arguments({**FULL_KWARGS, "maybe": 7})
    assert box["maybe"] == "7"
    assert Full.parse_arguments(box)["maybe"] == 7


def test_optional_none_is_not_sent() -> None:
    assert "maybe" not in Full.make_arguments({**FULL_KWARGS, "maybe": None})


def test_response_round_trip() -> None:
    assert Full.make_response({"ok": False}) == {"ok": "False"}
    assert Full.parse_response(Box(ok="True", note="n")) == {"ok": True, "note": "n"}
    assert Full.parse_response(Box(ok="True", _answer="1")) == {"ok": True, "note": None}


def test_keyword_names_match_loosely_like_the_reference() -> None:
    assert Echo.make_arguments({"Value": "x"}) == {"value": "x"}
    with pytest.raises(ArgumentError, match="name the same field"):
        Echo.make_arguments({"value": "x", "VALUE": "y"})


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "Echo arguments: missing required 'value'"),
        ({"value": None}, "'value' is required and cannot be None"),
        ({"value": 1}, "Echo arguments: 'value': expected str, got int 1"),
        ({"value": "x", "extra": 1}, "Echo arguments: unknown 'extra'"),
        ({"valu": "x"}, "unknown 'valu'"),
        ({"value": "a\nb"}, "'value': the value holds a CR or LF"),
        ({"value": "\ud800"}, "cannot be encoded as UTF-8"),
    ],
)
def test_argument_errors(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ArgumentError) as info:
        Echo.make_arguments(kwargs)
    assert words in str(info.value)
    with pytest.raises(ArgumentError):
        Echo(**kwargs)


def test_argument_error_names_command_and_argument() -> None:
    with pytest.raises(
        ArgumentError, match=r"Full-Test arguments: 'numbers': item 1: expected int"
    ):
        Full.make_arguments({**FULL_KWARGS, "numbers": [1, "2"]})


def test_response_errors() -> None:
    with pytest.raises(ArgumentError, match="Echo response: missing required 'value'"):
        Echo.make_response({})
    with pytest.raises(ArgumentError, match="Echo response: unknown 'other'"):
        Echo.make_response({"value": "x", "other": "y"})
    with pytest.raises(ArgumentError, match="Echo response: missing required 'value'"):
        Echo.parse_response(Box())
    with pytest.raises(ArgumentError, match="Full-Test response: 'ok'"):
        Full.parse_response(Box(ok="yes"))


def test_parse_arguments_errors() -> None:
    with pytest.raises(ArgumentError, match="missing required 'value'"):
        Echo.parse_arguments(Box())
    with pytest.raises(ArgumentError, match="'number'"):
        Full.parse_arguments(Box(Full.make_arguments(FULL_KWARGS), number="x"))


def test_body_field_bytes_travels_raw() -> None:
    box = StoreBlob.make_arguments({"name": "n", "body": b"\r\n\x00"})
    assert box == Box(name="n", body=b"\r\n\x00")
    assert StoreBlob.parse_arguments(box) == {"name": "n", "body": b"\r\n\x00"}


def test_body_field_string_is_utf8() -> None:
    box = StoreBlob.make_response({"body": "✓"})
    assert box.body == "✓".encode()
    assert dict(box) == {}
    assert StoreBlob.parse_response(box) == {"body": "✓"}
    with pytest.raises(ArgumentError, match="not valid UTF-8"):
        StoreBlob.parse_response(Box(body=b"\xff"))


def test_body_field_from_a_body_header() -> None:
    assert StoreBlob.parse_response(Box({"body": "y"})) == {"body": "y"}


def test_body_field_missing() -> None:
    with pytest.raises(ArgumentError, match="missing required 'body'"):
        StoreBlob.parse_arguments(Box(name="n"))


def test_instance_validates_and_keeps_kwargs() -> None:
    echo = Echo(value="hi")
    assert echo.kwargs == {"value": "hi"}
    assert repr(echo) == "Echo(value='hi')"


def test_do_calls_the_connection() -> None:
    calls: list[tuple[type[Command], dict[str, Any]]] = []

    class FakeConnection:
        def call(self, command: type[Command], **kwargs: Any) -> str:
            calls.append((command, kwargs))
            return "future"

    assert Echo(value="hi").do(FakeConnection()) == "future"
    assert calls == [(Echo, {"value": "hi"})]


def test_responder_marks_the_function() -> None:
    def handler(self: object, value: str) -> dict[str, str]:
        return {"value": value}

    assert Echo.responder(handler) is handler
    assert handler.__juice_command__ is Echo  # type: ignore[attr-defined]


class TestErrors:
    def test_error_code(self) -> None:
        assert Risky.error_code(Oops("x")) == ("OOPS", False)
        assert Risky.error_code(Subtle("x")) == ("OOPS", False)
        assert Risky.error_code(Broken("x")) == ("BROKEN", True)
        assert Risky.error_code(ValueError("x")) is None

    def test_most_specific_class_wins(self) -> None:
        class Specific(Command):
            errors = {Oops: "GENERAL", Subtle: "SPECIFIC"}

        assert Specific.error_code(Subtle()) == ("SPECIFIC", False)
        assert Specific.error_code(Oops()) == ("GENERAL", False)

    def test_error_from_code(self) -> None:
        error = Risky.error_from_code("OOPS", "bad thing")
        assert type(error) is Oops
        assert str(error) == "bad thing"
        assert type(Risky.error_from_code("BROKEN", "b")) is Broken

    def test_undeclared_code(self) -> None:
        error = Risky.error_from_code("OTHER", "d")
        assert type(error) is RemoteJuiceError
        assert isinstance(error, RemoteJuiceError)
        assert (error.code, error.description) == ("OTHER", "d")

    def test_unhandled_code(self) -> None:
        error = Echo.error_from_code("UNHANDLED", "Unhandled Remote System Exception ")
        assert type(error) is UnhandledRemoteJuiceError
        assert error.code == "UNHANDLED"

    def test_class_that_cannot_take_the_description(self) -> None:
        error = Risky.error_from_code("TWO", "d")
        assert type(error) is RemoteJuiceError
        assert isinstance(error, RemoteJuiceError) and error.code == "TWO"


@pytest.mark.parametrize(
    "body",
    [
        {"arguments": [("a", str)]},
        {"arguments": [("a", String()), ("A", String())]},
        {"arguments": [("", String())]},
        {"arguments": [("_ask", String())]},
        {"arguments": ["a"]},
        {"response": [(1, String())]},
        {"errors": {ValueError: "BAD\nCODE"}},
        {"errors": {ValueError: ""}},
        {"errors": {"notaclass": "X"}},
        {"fatal_errors": {int: "X"}},
        {"command_name": "Two\r\nLines"},
        {"command_name": ""},
    ],
)
def test_bad_declarations_fail_at_class_creation(body: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        type("Bad", (Command,), body)


class Shouted(String):
    """A String subclass that converts: the codec's shortcut for plain text must not skip it."""

    def to_string(self, value: Any) -> str:
        return str(super().to_string(value)).upper()

    def from_string(self, text: str) -> Any:
        return text.lower()


class Loud(Command):
    arguments = [("word", Shouted()), ("plain", Unicode())]
    response = [("word", Shouted())]


def test_a_converting_string_subclass_is_called_both_ways() -> None:
    box = Loud.make_arguments({"word": "hi", "plain": "as is"})
    assert box == {"word": "HI", "plain": "as is"}
    assert Loud.parse_arguments(box) == {"word": "hi", "plain": "as is"}
    assert Loud.parse_response(Loud.make_response({"word": "ok"})) == {"word": "ok"}


def test_a_plain_string_field_still_refuses_what_is_not_str() -> None:
    with pytest.raises(ArgumentError, match=r"Loud arguments: 'plain': expected str"):
        Loud.make_arguments({"word": "hi", "plain": b"bytes"})
    with pytest.raises(ArgumentError, match=r"Echo arguments: 'value': the value"):
        Echo.make_arguments({"value": "a\nb"})
