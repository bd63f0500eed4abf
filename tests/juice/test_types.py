"""Argument types: wire text out, values back, and refusals both ways."""

from __future__ import annotations

import math
import pathlib
from typing import Any

import pytest

from juicectl.juice import (
    Argument,
    ArgumentError,
    Boolean,
    BoxList,
    Bytes,
    Float,
    Integer,
    ListOf,
    Path,
    String,
    Unicode,
)

# (id, type, value, wire text)
ROUND_TRIPS: list[tuple[str, Argument, Any, str]] = [
    ("string", String(), "héllo", "héllo"),
    ("string with CRLF", String(), "a\r\nb", "a\r\nb"),
    ("empty string", String(), "", ""),
    ("unicode", Unicode(), "✓", "✓"),
    ("integer", Integer(), 42, "42"),
    ("negative integer", Integer(), -7, "-7"),
    ("big integer", Integer(), 10**30, "1" + "0" * 30),
    ("float", Float(), 1.5, "1.5"),
    ("float repr round trips", Float(), 0.1, "0.1"),
    ("inf", Float(), math.inf, "inf"),
    ("true", Boolean(), True, "True"),
    ("false", Boolean(), False, "False"),
    ("bytes", Bytes(), b"\x00\xff\r\n", "AP8NCg=="),
    ("empty bytes", Bytes(), b"", ""),
    ("path", Path(), pathlib.Path("/tmp/a b"), "/tmp/a b"),
    ("list of ints", ListOf(Integer()), [1, 2, 3], "1, 2, 3"),
    ("one-item list", ListOf(Integer()), [5], "5"),
    ("empty list", ListOf(Integer()), [], ""),
    ("list of strings", ListOf(String()), ["a", "b c"], "a, b c"),
    ("custom delimiter", ListOf(String(), delimiter="|"), ["a, b", "c"], "a, b|c"),
    ("list of lists", ListOf(ListOf(Integer()), delimiter="; "), [[1, 2], [3]], "1, 2; 3"),
    (
        "box list",
        BoxList([("a", String()), ("b", Integer())]),
        [{"a": "x\r\ny", "b": 1}, {"a": "", "b": 2}],
        "A: x\r\n y\r\nB: 1\r\n\r\nA: \r\nB: 2\r\n\r\n",
    ),
    ("empty box list", BoxList([("a", String())]), [], ""),
]


@pytest.mark.parametrize(
    ("argument", "value", "text"), [c[1:] for c in ROUND_TRIPS], ids=[c[0] for c in ROUND_TRIPS]
)
def test_round_trip(argument: Argument, value: Any, text: str) -> None:
    assert argument.to_string(value) == text
    assert argument.from_string(text) == value


def test_float_nan() -> None:
    assert Float().to_string(math.nan) == "nan"
    assert math.isnan(Float().from_string("nan"))


def test_float_takes_ints() -> None:
    assert Float().to_string(2) == "2.0"
    with pytest.raises(ArgumentError, match="too large"):
        Float().to_string(10**400)


def test_path_takes_str_and_pathlike() -> None:
    assert Path().to_string("/a") == "/a"
    assert Path().to_string(pathlib.PurePosixPath("/b")) == "/b"
    assert isinstance(Path().from_string("/c"), pathlib.Path)


def test_bytes_takes_bytearray_and_memoryview() -> None:
    assert Bytes().to_string(bytearray(b"ab")) == "YWI="
    assert Bytes().to_string(memoryview(b"ab")) == "YWI="


def test_list_of_takes_tuples_and_generators() -> None:
    assert ListOf(Integer()).to_string((1, 2)) == "1, 2"
    assert ListOf(Integer()).to_string(i for i in range(3)) == "0, 1, 2"


def test_optional_flag() -> None:
    assert not String().optional
    assert String(optional=True).optional
    assert ListOf(Integer(), optional=True).optional
    assert BoxList([], optional=True).optional


# (id, type, wrong value, words in the message)
WRONG_TYPES: list[tuple[str, Argument, Any, str]] = [
    ("string given int", String(), 1, "expected str, got int 1"),
    ("string given bytes", String(), b"x", "expected str, got bytes"),
    ("integer given bool", Integer(), True, "expected int, got bool True"),
    ("integer given float", Integer(), 1.0, "expected int, got float"),
    ("integer given str", Integer(), "1", "expected int, got str '1'"),
    ("float given bool", Float(), False, "expected float, got bool"),
    ("float given str", Float(), "1.5", "expected float"),
    ("boolean given int", Boolean(), 1, "expected bool, got int"),
    ("boolean given None", Boolean(), None, "expected bool"),
    ("bytes given str", Bytes(), "x", "expected bytes, got str"),
    ("path given bytes path", Path(), b"/x", "expected pathlib.Path or str"),
    ("path given int", Path(), 3, "expected pathlib.Path or str"),
    ("list given str", ListOf(String()), "abc", "expected a list, got str"),
    ("list given dict", ListOf(String()), {"a": 1}, "expected a list"),
    ("list given int", ListOf(String()), 3, "expected a list"),
    ("list item of wrong type", ListOf(Integer()), [1, "2"], "item 1: expected int"),
    ("list item holding the delimiter", ListOf(String()), ["a, b"], "contains the delimiter"),
    ("list of one empty string", ListOf(String()), [""], "cannot be told from an empty list"),
    ("box list given dict", BoxList([("a", String())]), {"a": "x"}, "expected a list of dicts"),
    ("box list item not a dict", BoxList([("a", String())]), ["x"], "item 0: expected a dict"),
    (
        "box list item missing field",
        BoxList([("a", String())]),
        [{}],
        "item 0: missing required 'a'",
    ),
    (
        "box list item unknown field",
        BoxList([("a", String())]),
        [{"a": "x", "b": "y"}],
        "unknown 'b'",
    ),
    (
        "box list item wrong type",
        BoxList([("a", String())]),
        [{"a": 1}],
        "item 0: 'a': expected str",
    ),
]


@pytest.mark.parametrize(
    ("argument", "value", "words"), [c[1:] for c in WRONG_TYPES], ids=[c[0] for c in WRONG_TYPES]
)
def test_wrong_python_types(argument: Argument, value: Any, words: str) -> None:
    with pytest.raises(ArgumentError) as info:
        argument.to_string(value)
    assert words in str(info.value)


# (id, type, bad wire text)
BAD_TEXT: list[tuple[str, Argument, str]] = [
    ("integer", Integer(), "x"),
    ("integer float", Integer(), "1.5"),
    ("integer empty", Integer(), ""),
    ("integer too many digits", Integer(), "9" * 5000),
    ("float", Float(), "one"),
    ("boolean lower-case", Boolean(), "true"),
    ("boolean number", Boolean(), "1"),
    ("bytes not base64", Bytes(), "***"),
    ("bytes non-ascii", Bytes(), "é"),
    ("bytes bad padding", Bytes(), "YWI"),
    ("list item", ListOf(Integer()), "1, x"),
    ("box list not boxes", BoxList([("a", String())]), "garbage\r\n\r\n"),
    ("box list truncated", BoxList([("a", String())]), "A: b\r\n"),
    ("box list missing field", BoxList([("a", String())]), "B: x\r\n\r\n"),
    ("box list bad item", BoxList([("n", Integer())]), "N: x\r\n\r\n"),
]


@pytest.mark.parametrize(
    ("argument", "text"), [c[1:] for c in BAD_TEXT], ids=[c[0] for c in BAD_TEXT]
)
def test_bad_wire_text(argument: Argument, text: str) -> None:
    with pytest.raises(ArgumentError):
        argument.from_string(text)


def test_box_list_ignores_extra_fields_and_fills_optional() -> None:
    argument = BoxList([("a", String()), ("b", Integer(optional=True))])
    assert argument.from_string("A: x\r\nC: extra\r\n\r\n") == [{"a": "x", "b": None}]
    assert argument.to_string([{"a": "x", "b": None}]) == "A: x\r\n\r\n"


def test_box_list_with_body_field_matches_the_reference_shape() -> None:
    argument = BoxList([("body", String())])
    text = argument.to_string([{"body": "hi"}])
    assert text == "-Length: 2\r\n\r\nhi"
    assert argument.from_string(text) == [{"body": "hi"}]


def test_list_of_validates_its_arguments() -> None:
    with pytest.raises(TypeError):
        ListOf(int)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ListOf(String(), delimiter="")


def test_box_list_validates_its_fields() -> None:
    with pytest.raises(TypeError):
        BoxList([("a", str)])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        BoxList([("a", String()), ("A", String())])


def test_base_argument_is_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        Argument()  # type: ignore[abstract]

    class HalfDone(Argument):
        def to_string(self, value: object) -> str:
            return str(value)

    with pytest.raises(TypeError, match="from_string"):
        HalfDone()  # type: ignore[abstract]


def test_reprs() -> None:
    assert repr(String()) == "String(optional=False)"
    assert "ListOf(Integer(optional=False)" in repr(ListOf(Integer()))
    assert repr(BoxList([])).startswith("BoxList([]")
