"""Boxes, key rules and the serializer: what goes out, and what is refused."""

from __future__ import annotations

import copy
import pickle

import pytest

from juicectl.juice import Box, SerializationError, normalize_key, serialize_box, wire_key
from tests.juice.helpers import content, feed_whole


@pytest.mark.parametrize(
    ("wire", "key"),
    [
        ("-Error-Code", "_error_code"),
        ("-Ask", "_ask"),
        ("Value", "value"),
        ("VALUE", "value"),
        ("Store-Path", "store_path"),
        ("from", "From"),
        ("FROM", "From"),
        ("Import", "Import"),
        ("class", "Class"),
        ("None", "none"),  # lower-cased first: no longer a keyword
        ("match", "match"),  # a soft keyword is not a keyword
        ("", ""),
        ("Ünï", "ünï"),
    ],
)
def test_normalize_key(wire: str, key: str) -> None:
    assert normalize_key(wire) == key


@pytest.mark.parametrize(
    ("key", "wire"),
    [
        ("_error_code", "-Error-Code"),
        ("_ask", "-Ask"),
        ("value", "Value"),
        ("storepath", "Storepath"),
        ("store_path", "Store-Path"),
        ("From", "From"),
        ("a1b", "A1B"),
        ("x-y", "X-Y"),
        # Like the reference, which title-cases UTF-8 bytes: only ASCII letters change case,
        # and every non-ASCII character counts as a word boundary.
        ("ünï", "üNï"),
        ("aéb", "AéB"),
        ("straße", "StraßE"),
    ],
)
def test_wire_key(key: str, wire: str) -> None:
    assert wire_key(key) == wire


@pytest.mark.parametrize("key", ["_error_code", "value", "From", "store_path", "ünï", "straße"])
def test_key_round_trip(key: str) -> None:
    assert normalize_key(wire_key(key)) == key


class TestBox:
    def test_constructor_forms(self) -> None:
        assert Box() == {}
        assert Box({"a": "1"}) == {"a": "1"}
        assert Box([("a", "1")], b="2") == {"a": "1", "b": "2"}
        assert Box(a="1").body is None
        assert Box(body=b"x").body == b"x"
        assert Box(fields={"x": "y"}) == {"fields": {"x": "y"}}  # fields is positional-only

    def test_equality_includes_the_body(self) -> None:
        assert Box(a="1", body=b"x") == Box(a="1", body=b"x")
        assert Box(a="1", body=b"x") != Box(a="1", body=b"y")
        assert Box(a="1", body=b"x") != Box(a="1")
        assert Box(a="1") == {"a": "1"}
        assert Box(a="1") == {"a": "1"}
        assert Box(a="1", body=b"") != {"a": "1"}
        assert Box(a="1") != {"a": "2"}
        assert Box() != "something else"

    def test_unhashable(self) -> None:
        with pytest.raises(TypeError):
            hash(Box())

    def test_copy_keeps_the_body(self) -> None:
        box = Box(a="1", body=b"x")
        for clone in (
            box.copy(),
            copy.copy(box),
            copy.deepcopy(box),
            pickle.loads(pickle.dumps(box)),
        ):
            assert clone == box
            assert type(clone) is Box
            assert clone is not box

    def test_repr(self) -> None:
        assert repr(Box(a="1")) == "Box({'a': '1'})"
        assert repr(Box(a="1", body=b"x")) == "Box({'a': '1'}, body=b'x')"


# (id, box, exact wire bytes)
SERIALIZED: list[tuple[str, Box, bytes]] = [
    ("empty", Box(), b"\r\n"),
    ("one field", Box(value="hi"), b"Value: hi\r\n\r\n"),
    ("protocol keys", Box({"_command": "Echo", "_ask": "1"}), b"-Command: Echo\r\n-Ask: 1\r\n\r\n"),
    ("order kept", Box(b="2", a="1"), b"B: 2\r\nA: 1\r\n\r\n"),
    ("continuation", Box(value="a\r\nb"), b"Value: a\r\n b\r\n\r\n"),
    ("trailing CRLF", Box(value="a\r\n"), b"Value: a\r\n \r\n\r\n"),
    ("only CRLFs", Box(value="\r\n\r\n"), b"Value: \r\n \r\n \r\n\r\n"),
    ("empty value", Box(value=""), b"Value: \r\n\r\n"),
    ("utf-8", Box(näme="✓"), "NäMe: ✓\r\n\r\n".encode()),
    ("body", Box(name="x", body=b"hello"), b"Name: x\r\n-Length: 5\r\n\r\nhello"),
    ("empty body", Box(body=b""), b"-Length: 0\r\n\r\n"),
    ("binary body", Box(body=b"\r\n\x00\xff"), b"-Length: 4\r\n\r\n\r\n\x00\xff"),
    ("bytearray body", Box(body=bytearray(b"ab")), b"-Length: 2\r\n\r\nab"),  # type: ignore[arg-type]
    ("colon in key", Box({"a:b": "c"}), b"A:B: c\r\n\r\n"),
    ("value starting with space", Box(a=" b"), b"A:  b\r\n\r\n"),
]


@pytest.mark.parametrize(
    ("box", "wire"), [c[1:] for c in SERIALIZED], ids=[c[0] for c in SERIALIZED]
)
def test_serialize(box: Box, wire: bytes) -> None:
    assert serialize_box(box) == wire


@pytest.mark.parametrize(
    ("box", "wire"), [c[1:] for c in SERIALIZED], ids=[c[0] for c in SERIALIZED]
)
def test_serialized_boxes_parse_back(box: Box, wire: bytes) -> None:
    [parsed] = feed_whole(wire)
    expected = {normalize_key(wire_key(k)): v for k, v in box.items()}
    body = None if box.body is None else bytes(box.body)
    assert content([parsed]) == [(expected, body)]


def test_plain_dict_serializes_without_body() -> None:
    assert serialize_box({"a": "b"}) == b"A: b\r\n\r\n"


# (id, box, words the message must hold)
REFUSED: list[tuple[str, object, str]] = [
    ("empty key", {"": "v"}, "empty"),
    ("colon-space in key", {"a: b": "v"}, "': '"),
    ("CR in key", {"a\rb": "v"}, "CR"),
    ("LF in key", {"a\nb": "v"}, "LF"),
    ("CRLF in key", {"a\r\nb": "v"}, "CR"),
    ("key starting with space", {" a": "v"}, "space"),
    ("reserved body key", {"body": "v"}, "Box.body"),
    ("reserved length key", {"_length": "1"}, "reserved"),
    ("non-str key", {1: "v"}, "str"),
    ("lone CR in value", {"a": "x\ry"}, "CR or LF"),
    ("lone LF in value", {"a": "x\ny"}, "CR or LF"),
    ("LF CR in value", {"a": "x\n\ry"}, "CR or LF"),
    ("CR before CRLF", {"a": "x\r\r\ny"}, "CR or LF"),
    ("trailing CR", {"a": "x\r"}, "CR or LF"),
    ("int value", {"a": 1}, "str"),
    ("bytes value", {"a": b"x"}, "str"),
    ("None value", {"a": None}, "str"),
    ("surrogate in value", {"a": "\ud800"}, "UTF-8"),
    ("surrogate in key", {"\ud800": "v"}, "UTF-8"),
]


@pytest.mark.parametrize(("box", "words"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_serializer_refuses(box: dict[object, object], words: str) -> None:
    with pytest.raises(SerializationError, match=words.replace("(", r"\(")):
        serialize_box(box)  # type: ignore[arg-type]


def test_serialization_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        serialize_box({"": "v"})


def test_non_bytes_body_refused() -> None:
    with pytest.raises(SerializationError, match="bytes"):
        serialize_box(Box(body="text"))  # type: ignore[arg-type]


def test_refusal_after_good_fields_writes_nothing() -> None:
    # The serializer returns bytes or raises: there is no partial output to leak.
    with pytest.raises(SerializationError):
        serialize_box(Box({"good": "1", "bad": "x\ny"}))


def test_many_boxes_round_trip_through_one_stream() -> None:
    boxes = [
        Box(n=str(i), text="a\r\nb" * (i % 3), body=b"\r\n" * (i % 2) if i % 4 else None)
        for i in range(200)
    ]
    stream = b"".join(map(serialize_box, boxes))
    assert content(feed_whole(stream)) == content(boxes)
