"""The codec's records (``Limits``, the classified messages, ``Reply``) and the child's
``ProtocolStreams``: immutable values, compared, hashed and shown by their fields, as the
frozen dataclasses they replace were."""

from __future__ import annotations

from typing import Any

import pytest

from juicectl.child import ProtocolStreams
from juicectl.juice import Answer, Box, ErrorAnswer, Limits, Reply, Request

RECORDS: list[tuple[type[Any], tuple[Any, ...], tuple[str, ...]]] = [
    (Limits, (10, 20, 30, 40), ("max_line_length", "max_body_length", "max_headers",
                                "max_header_bytes")),
    (Answer, ("1", Box({"a": "b"})), ("tag", "box")),
    (ErrorAnswer, ("2", "UNHANDLED", "broken"), ("tag", "code", "description")),
    (Request, ("Echo", None, Box()), ("command", "tag", "box")),
    (Reply, (b"x", True, None), ("data", "close", "error")),
    (ProtocolStreams, (3, 4), ("read_fd", "write_fd")),
]


@pytest.mark.parametrize(("kind", "values", "names"), RECORDS)
def test_a_record_is_its_fields(kind: type[Any], values: tuple[Any, ...],
                                names: tuple[str, ...]) -> None:
    record = kind(*values)
    assert tuple(getattr(record, name) for name in names) == values
    assert kind(**dict(zip(names, values, strict=True))) == record
    assert kind.__match_args__ == names
    shown = ", ".join(f"{name}={value!r}" for name, value in zip(names, values, strict=True))
    assert repr(record) == f"{kind.__qualname__}({shown})"
    assert not hasattr(record, "__dict__")


@pytest.mark.parametrize(("kind", "values", "names"), RECORDS)
def test_a_record_cannot_change(kind: type[Any], values: tuple[Any, ...],
                                names: tuple[str, ...]) -> None:
    record = kind(*values)
    with pytest.raises(AttributeError, match="is frozen"):
        setattr(record, names[0], values[0])
    with pytest.raises(AttributeError, match="is frozen"):
        delattr(record, names[0])
    with pytest.raises(AttributeError):
        record.other = 1
    assert getattr(record, names[0]) == values[0]


def test_records_are_equal_by_class_and_fields() -> None:
    assert Answer("1", Box()) == Answer("1", Box())
    assert Answer("1", Box()) != Answer("2", Box())
    assert Answer("1", Box()) != Request("1", None, Box())
    assert ErrorAnswer("1", "A", "") != ("1", "A", "")
    assert Limits() == Limits()
    assert Limits() != Limits(max_line_length=100)
    assert Limits(max_line_length=100) == Limits(100)


def test_records_hash_by_fields() -> None:
    assert hash(Limits()) == hash(Limits())
    assert len({Limits(), Limits(), Limits(max_headers=1)}) == 2
    assert len({ErrorAnswer("1", "A", "x"), ErrorAnswer("1", "A", "x")}) == 1
    with pytest.raises(TypeError):
        hash(Answer("1", Box()))  # a Box is a dict


def test_records_match_by_position() -> None:
    match ErrorAnswer("7", "UNHANDLED", "why"):
        case ErrorAnswer(tag, code, description):
            assert (tag, code, description) == ("7", "UNHANDLED", "why")
        case _:
            pytest.fail("no match")


def test_limits_replace_makes_a_checked_copy() -> None:
    limits = Limits()
    smaller = limits.replace(max_body_length=1024)
    assert smaller.max_body_length == 1024
    assert smaller.max_line_length == limits.max_line_length
    assert limits.max_body_length == Limits().max_body_length
    with pytest.raises(ValueError, match=r"Limits.max_headers must be a positive int, not 0"):
        limits.replace(max_headers=0)
    with pytest.raises(TypeError, match="no limit named 'max_lines'"):
        limits.replace(max_lines=3)
