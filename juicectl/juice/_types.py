"""Argument types: how one Python value becomes the text of one box field, and back.

Each type checks the Python type on the way out (``ArgumentError`` naming what was wrong)
and the text on the way in, so that a bad value is refused before anything is written and
bad text from a peer never turns into a half-parsed value.

The wire forms match the reference peer: ``Integer`` is decimal, ``Boolean`` is
``True``/``False``, ``ListOf`` joins with ``", "``, ``BoxList`` is the reference's ``JuiceList``
(a run of serialized boxes, carried in one value as continuation lines).
"""

from __future__ import annotations

import abc
import base64
import binascii
import os
from collections.abc import Iterable, Mapping
from typing import Any

from juicectl.juice._box import Box, check_value, normalize_key, serialize_box
from juicectl.juice._errors import ArgumentError, ProtocolError
from juicectl.juice._parser import BoxParser

_new_box = dict.__new__

__all__ = [
    "Argument",
    "Boolean",
    "BoxList",
    "Bytes",
    "FieldSpec",
    "Float",
    "Integer",
    "ListOf",
    "Path",
    "String",
    "Unicode",
    "box_to_fields",
    "compile_fields",
    "fields_to_box",
]


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _wrong_type(expected: str, value: object) -> ArgumentError:
    return ArgumentError(f"expected {expected}, got {_describe(value)}")


class Argument(abc.ABC):
    """Base class of argument types: a subclass defines ``to_string`` and ``from_string``.

    Args:
        optional: when true the field may be missing (or ``None``): it is then not sent, and
            a missing field is received as ``None``.
    """

    optional: bool

    def __init__(self, optional: bool = False) -> None:
        self.optional = bool(optional)

    @abc.abstractmethod
    def to_string(self, value: Any) -> str:
        """Return the wire text of ``value``; ``ArgumentError`` if it has the wrong type."""

    @abc.abstractmethod
    def from_string(self, text: str) -> Any:
        """Return the value ``text`` stands for; ``ArgumentError`` if it is not valid."""

    def to_body(self, value: Any) -> bytes:
        """Return the raw bytes of ``value`` when it travels as the box's body."""
        return self.to_string(value).encode("utf-8")

    def from_body(self, data: bytes) -> Any:
        """Return the value a received body stands for."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ArgumentError("the body is not valid UTF-8") from None
        return self.from_string(text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(optional={self.optional})"


class String(Argument):
    """Text (``str``), sent as it is."""

    def to_string(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _wrong_type("str", value)
        return value

    def from_string(self, text: str) -> Any:
        return text


class Unicode(String):
    """Text (``str``); the same as :class:`String` on Python 3 (both travel as UTF-8)."""


class Integer(Argument):
    """An ``int`` (not ``bool``), sent in decimal."""

    def to_string(self, value: Any) -> str:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _wrong_type("int", value)
        return str(value)

    def from_string(self, text: str) -> Any:
        try:
            return int(text)
        except ValueError:
            raise ArgumentError(f"not an integer: {text[:60]!r}") from None


class Float(Argument):
    """A ``float`` (an ``int`` is accepted too, not ``bool``), sent as Python's ``repr``."""

    def to_string(self, value: Any) -> str:
        if not isinstance(value, float | int) or isinstance(value, bool):
            raise _wrong_type("float", value)
        try:
            number = float(value)
        except OverflowError:
            raise ArgumentError(f"int too large for a float: {_describe(value)}") from None
        return repr(number)

    def from_string(self, text: str) -> Any:
        try:
            return float(text)
        except ValueError:
            raise ArgumentError(f"not a float: {text[:60]!r}") from None


class Boolean(Argument):
    """A ``bool``, sent as ``True`` or ``False``."""

    def to_string(self, value: Any) -> str:
        if not isinstance(value, bool):
            raise _wrong_type("bool", value)
        return "True" if value else "False"

    def from_string(self, text: str) -> Any:
        if text == "True":
            return True
        if text == "False":
            return False
        raise ArgumentError(f"not a boolean (True or False): {text[:60]!r}")


class Bytes(Argument):
    """Binary data (``bytes``, ``bytearray``, ``memoryview``), sent as base64.

    As the box's ``body`` field the bytes travel raw, not base64-encoded.
    """

    def to_string(self, value: Any) -> str:
        return base64.b64encode(self.to_body(value)).decode("ascii")

    def from_string(self, text: str) -> Any:
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise ArgumentError(f"not valid base64: {text[:60]!r}") from None

    def to_body(self, value: Any) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise _wrong_type("bytes", value)
        return bytes(value)

    def from_body(self, data: bytes) -> Any:
        return data


class Path(Argument):
    """A filesystem path: ``pathlib.Path`` in, ``pathlib.Path`` out (``str`` also accepted)."""

    def to_string(self, value: Any) -> str:
        if not isinstance(value, str | os.PathLike):
            raise _wrong_type("pathlib.Path or str", value)
        text = os.fspath(value)
        if not isinstance(text, str):
            raise _wrong_type("a text path (not bytes)", value)
        return text

    def from_string(self, text: str) -> Any:
        # Imported here: pathlib (with fnmatch, urllib.parse, ipaddress) is about 5 ms of a
        # worker's start, and most workers never receive a path.
        import pathlib

        return pathlib.Path(text)


def _items(value: Any, expected: str) -> list[Any]:
    if isinstance(value, str | bytes | bytearray | memoryview | Mapping) or not isinstance(
        value, Iterable
    ):
        raise _wrong_type(expected, value)
    return list(value)


class ListOf(Argument):
    """A list of values of one type, joined with ``delimiter`` (``", "`` like the reference).

    An empty list travels as an empty value. A list holding one empty string would look the
    same, so it is refused on the way out.
    """

    def __init__(self, subtype: Argument, delimiter: str = ", ", optional: bool = False) -> None:
        super().__init__(optional)
        if not isinstance(subtype, Argument):
            raise TypeError(f"ListOf needs an Argument instance, not {subtype!r}")
        if not isinstance(delimiter, str) or not delimiter:
            raise TypeError(f"ListOf delimiter must be a non-empty str, not {delimiter!r}")
        self.subtype = subtype
        self.delimiter = delimiter

    def to_string(self, value: Any) -> str:
        items = _items(value, "a list")
        texts = []
        for index, item in enumerate(items):
            try:
                text = self.subtype.to_string(item)
            except ArgumentError as exc:
                raise ArgumentError(f"item {index}: {exc}") from None
            if self.delimiter in text:
                raise ArgumentError(
                    f"item {index} ({text[:60]!r}) contains the delimiter {self.delimiter!r}"
                )
            texts.append(text)
        if texts == [""]:
            raise ArgumentError("a list of one empty item cannot be told from an empty list")
        return self.delimiter.join(texts)

    def from_string(self, text: str) -> Any:
        if not text:
            return []
        result = []
        for index, part in enumerate(text.split(self.delimiter)):
            try:
                result.append(self.subtype.from_string(part))
            except ArgumentError as exc:
                raise ArgumentError(f"item {index}: {exc}") from None
        return result

    def __repr__(self) -> str:
        return f"ListOf({self.subtype!r}, delimiter={self.delimiter!r}, optional={self.optional})"


class BoxList(Argument):
    """A list of dicts, each sent as a nested box (the reference's ``JuiceList``).

    Args:
        arguments: the fields of each nested box, as ``(name, Argument)`` pairs.
        optional: whether the whole list may be missing.
    """

    def __init__(self, arguments: Iterable[tuple[str, Argument]], optional: bool = False) -> None:
        super().__init__(optional)
        self.arguments = list(arguments)
        self._specs = compile_fields(self.arguments, "BoxList")

    def to_string(self, value: Any) -> str:
        items = _items(value, "a list of dicts")
        parts = []
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ArgumentError(f"item {index}: {_wrong_type('a dict', item)}")
            box = fields_to_box(self._specs, item, f"item {index}")
            parts.append(serialize_box(box).decode("utf-8"))
        return "".join(parts)

    def from_string(self, text: str) -> Any:
        parser = BoxParser()
        try:
            boxes = parser.feed(text.encode("utf-8"))
            parser.feed(b"")
        except (ProtocolError, UnicodeEncodeError) as exc:
            raise ArgumentError(f"not a list of boxes: {exc}") from None
        return [box_to_fields(self._specs, box, f"item {index}") for index, box in enumerate(boxes)]

    def __repr__(self) -> str:
        return f"BoxList({self.arguments!r}, optional={self.optional})"


#: The argument types whose text is their value both ways (not their subclasses, which may
#: convert): the codec skips their to_string and from_string calls on the request path.
_PLAIN_TEXT = frozenset({String, Unicode})

#: One declared field: (Python name, box key, argument type).
FieldSpec = tuple[str, str, Argument]


def compile_fields(fields: Iterable[tuple[str, Argument]], where: str) -> tuple[FieldSpec, ...]:
    """Check a ``[(name, Argument), ...]`` declaration and return its field specs.

    Raises:
        TypeError: a name is not a non-empty str, a type is not an ``Argument`` instance, or
            two names map to the same box key.
    """
    specs: list[FieldSpec] = []
    seen: set[str] = set()
    for entry in fields:
        if not isinstance(entry, tuple) or len(entry) != 2:
            raise TypeError(f"{where}: expected (name, Argument) pairs, got {entry!r}")
        name, argument = entry
        if not isinstance(name, str) or not name:
            raise TypeError(f"{where}: field names must be non-empty str, not {name!r}")
        if not isinstance(argument, Argument):
            raise TypeError(f"{where}: field {name!r} needs an Argument instance, not {argument!r}")
        key = normalize_key(name)
        if key in seen:
            raise TypeError(f"{where}: two fields map to the box key {key!r}")
        if key.startswith("_"):
            raise TypeError(f"{where}: field {name!r} would be a reserved '-' header")
        seen.add(key)
        specs.append((name, key, argument))
    return tuple(specs)


def fields_to_box(
    specs: tuple[FieldSpec, ...], values: Mapping[str, Any], what: str, kind: str = ""
) -> Box:
    """Return the box holding ``values`` (keyword names -> Python values) per ``specs``.

    Names match case-insensitively with ``-`` as ``_``, like the reference.

    Raises:
        ArgumentError: a required field is missing or ``None``, a name is unknown, or a value
            has the wrong type or cannot be written on the wire.
    """
    if len(values) == len(specs):
        box = _fields_as_named(specs, values, what, kind)
        if box is not None:
            return box
    given: dict[str, tuple[str, Any]] = {}
    for name, value in values.items():
        if not isinstance(name, str):
            raise ArgumentError(f"{what}{kind}: field names must be str, not {name!r}")
        key = normalize_key(name)
        if key in given:
            raise ArgumentError(f"{what}{kind}: {given[key][0]!r} and {name!r} name the same field")
        given[key] = (name, value)
    box = Box()
    for name, key, argument in specs:
        entry = given.pop(key, None)
        if entry is None or entry[1] is None:
            if argument.optional:
                continue
            if entry is None:
                _check_unknown(specs, given, what, kind)
                raise ArgumentError(f"{what}{kind}: missing required {name!r}")
            raise ArgumentError(f"{what}{kind}: {name!r} is required and cannot be None")
        value = entry[1]
        try:
            if key == "body":
                box.body = argument.to_body(value)
                continue
            text = argument.to_string(value)
        except ArgumentError as exc:
            raise ArgumentError(f"{what}{kind}: {name!r}: {exc}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise ArgumentError(f"{what}{kind}: {name!r}: {exc}") from exc
        _check_text(text, name, what, kind)
        box[key] = text
    if given:
        _check_unknown(specs, given, what, kind)
    return box


def _fields_as_named(
    specs: tuple[FieldSpec, ...], values: Mapping[str, Any], what: str, kind: str
) -> Box | None:
    """The common case of :func:`fields_to_box`: every field given, under its declared name.

    The caller has checked that there are as many values as fields, so finding each declared
    name means there is nothing unknown and nothing given twice. ``None`` (anything else: a
    name spelled another way, a ``None``, a body) sends the caller down the general path.
    """
    box: Box = _new_box(Box)
    for name, key, argument in specs:
        value = values.get(name)
        if value is None or key == "body":
            return None
        if type(value) is str and type(argument) in _PLAIN_TEXT:
            text = value  # what String.to_string returns, without the call
        else:
            try:
                text = argument.to_string(value)
            except ArgumentError as exc:
                raise ArgumentError(f"{what}{kind}: {name!r}: {exc}") from None
            except (TypeError, ValueError, OverflowError) as exc:
                raise ArgumentError(f"{what}{kind}: {name!r}: {exc}") from exc
        if not text.isascii() or "\r" in text or "\n" in text:
            _check_text(text, name, what, kind)  # only such text can be refused
        box[key] = text
    return box


def _check_text(text: str, name: str, what: str, kind: str) -> None:
    """``ArgumentError`` if ``text`` cannot travel as the value of field ``name``."""
    problem = check_value(text)
    if problem is None and not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            problem = "cannot be encoded as UTF-8"
    if problem is not None:
        raise ArgumentError(f"{what}{kind}: {name!r}: the value {problem}: {text[:60]!r}")


def _check_unknown(
    specs: tuple[FieldSpec, ...], given: dict[str, tuple[str, Any]], what: str, kind: str
) -> None:
    known = {key for _, key, _ in specs}
    unknown = [name for key, (name, _) in given.items() if key not in known]
    if unknown:
        raise ArgumentError(f"{what}{kind}: unknown {', '.join(map(repr, unknown))}")


def box_to_fields(
    specs: tuple[FieldSpec, ...], box: Box, what: str, kind: str = ""
) -> dict[str, Any]:
    """Return the Python values of the declared fields in ``box`` (extra keys are ignored).

    Raises:
        ArgumentError: a required field is missing or its text is not valid for its type.
    """
    result: dict[str, Any] = {}
    for name, key, argument in specs:
        try:
            if key == "body":
                data = box.body
                if data is None and "body" in box:
                    data = box["body"].encode("utf-8")
                if data is not None:
                    result[name] = argument.from_body(data)
                    continue
            else:
                text = box.get(key)
                if text is not None:
                    # String's text is its value: no call for it.
                    result[name] = (
                        text if type(argument) in _PLAIN_TEXT else argument.from_string(text)
                    )
                    continue
        except ArgumentError as exc:
            raise ArgumentError(f"{what}{kind}: {name!r}: {exc}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise ArgumentError(f"{what}{kind}: {name!r}: {exc}") from exc
        if not argument.optional:
            raise ArgumentError(f"{what}{kind}: missing required {name!r}")
        result[name] = None
    return result
