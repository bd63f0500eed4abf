"""Boxes, key rules and the serializer.

A box is an ordered set of ``Key: value`` header lines ended by an empty line, optionally
followed by a raw body whose size the ``-Length`` header gives. In memory a box is a ``dict``
of text keys to text values, plus a ``body`` attribute for those raw bytes.

Key rules, as the reference peer (Divmod Epsilon's ``juice``) applies them:

* On receipt a key is lower-cased and ``-`` becomes ``_``; a key that is then a Python keyword
  is title-cased (``from`` -> ``From``) so that it can never clash with a keyword argument.
* On the way out ``_`` becomes ``-`` and the key is title-cased. The reference title-cases the
  UTF-8 *bytes*, so only ASCII letters change case; we do the same to stay byte-identical.

The serializer refuses (``SerializationError``) anything that would corrupt the stream instead
of writing it: a key that is empty, starts with a space, or holds ``": "``, CR or LF; a value
holding a CR or LF that is not part of a CRLF pair; a value that is not ``str``.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable, Mapping
from typing import Any

from juicectl.juice._errors import SerializationError

__all__ = ["Box", "normalize_key", "serialize_box", "wire_key"]

#: Box keys the serializer owns: the body travels as ``-Length`` plus raw bytes.
_BODY_KEY = "body"
_LENGTH_KEY = "_length"

#: Validated wire forms of the keys seen so far. Bounded so that a stream of distinct keys
#: cannot grow it without limit; past the bound, keys are simply checked each time.
_WIRE_KEYS: dict[str, str] = {}
_WIRE_KEYS_MAX = 4096


class Box(dict[str, str]):
    """One Juice box: header fields (``str`` -> ``str``) plus an optional raw body.

    Keys received from the wire are normalised (see :func:`normalize_key`); keys given to the
    constructor are kept as they are and title-cased only when written.

    Attributes:
        body: the raw bytes sent after the blank line, announced by ``-Length``; ``None`` when
            the box has no body.
    """

    # No __slots__: a class-level default lets the parser create boxes with dict.__new__
    # (no __init__ call, no per-instance __dict__ until a body is set), which is much faster.
    body: bytes | None = None

    def __init__(
        self,
        fields: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        /,
        *,
        body: bytes | None = None,
        **kw: str,
    ) -> None:
        if fields is None:
            super().__init__(**kw)
        else:
            super().__init__(fields, **kw)
        if body is not None:
            self.body = body

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Box):
            return self.body == other.body and bool(dict.__eq__(self, other))
        if isinstance(other, dict):
            # A plain dict has no body: it equals a box only when the box has none either.
            return self.body is None and bool(dict.__eq__(self, other))
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        if isinstance(other, dict):
            return not self.__eq__(other)
        return NotImplemented

    def __repr__(self) -> str:
        if self.body is None:
            return f"Box({dict.__repr__(self)})"
        return f"Box({dict.__repr__(self)}, body={self.body!r})"

    def copy(self) -> Box:
        """Return a shallow copy, body included."""
        return Box(self, body=self.body)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_box, (dict(self), self.body))


def _rebuild_box(fields: dict[str, str], body: bytes | None) -> Box:
    return Box(fields, body=body)


def normalize_key(wire_key: str) -> str:
    """Return the in-memory form of a key read from the wire.

    ``"-Error-Code"`` -> ``"_error_code"``, ``"Value"`` -> ``"value"``, ``"from"`` -> ``"From"``.
    """
    key = wire_key.lower().replace("-", "_")
    if keyword.iskeyword(key):
        return key.title()
    return key


def wire_key(key: str) -> str:
    """Return the form a key travels in: ``"_error_code"`` -> ``"-Error-Code"``.

    Title-casing follows the reference, which title-cases UTF-8 bytes: only ASCII letters
    change case, every other character is left as it is.
    """
    hyphenated = key.replace("_", "-")
    if hyphenated.isascii():
        return hyphenated.title()
    try:
        return hyphenated.encode("utf-8").title().decode("utf-8")
    except UnicodeEncodeError as exc:
        raise SerializationError(f"key {key!r} cannot be encoded as UTF-8: {exc}") from None


def _checked_wire_key(key: object) -> str:
    """Validate ``key`` for writing and return its wire form (cached)."""
    if not isinstance(key, str):
        raise SerializationError(f"box keys must be str, not {type(key).__name__}: {key!r}")
    if not key:
        raise SerializationError("box keys must not be empty")
    if key == _BODY_KEY:
        raise SerializationError("the key 'body' is reserved: put raw bytes in Box.body instead")
    if key == _LENGTH_KEY:
        raise SerializationError("the key '_length' is reserved: it is computed from Box.body")
    if ": " in key or "\r" in key or "\n" in key:
        raise SerializationError(f"box key {key!r} holds ': ', CR or LF")
    if key[0] == " ":
        raise SerializationError(f"box key {key!r} starts with a space (a continuation line)")
    result = wire_key(key)
    if len(_WIRE_KEYS) < _WIRE_KEYS_MAX:
        _WIRE_KEYS[key] = result
    return result


def check_value(value: str) -> str | None:
    """Return why ``value`` cannot be written as a header value, or ``None`` if it can."""
    if "\r" in value or "\n" in value:
        rest = value.replace("\r\n", "")
        if "\r" in rest or "\n" in rest:
            return "holds a CR or LF that is not part of a CRLF pair"
    return None


def _escaped(key: str, value: object) -> str:
    """Return ``value`` ready to follow ``"Key: "``: CRLF become continuation lines."""
    if not isinstance(value, str):
        raise SerializationError(
            f"the value of {key!r} must be str, not {type(value).__name__}: {value!r:.80}"
        )
    if "\r" in value or "\n" in value:
        problem = check_value(value)
        if problem is not None:
            raise SerializationError(f"the value of {key!r} {problem}: {value!r:.80}")
        return value.replace("\r\n", "\r\n ")
    return value


def append_fields(parts: list[str], fields: Mapping[str, str]) -> None:
    """Append one ``"Key: value\\r\\n"`` string per field to ``parts``."""
    cache = _WIRE_KEYS
    for key, value in fields.items():
        wkey = cache.get(key)
        if wkey is None:
            wkey = _checked_wire_key(key)
        if type(value) is str and "\r" not in value and "\n" not in value:
            parts.append(f"{wkey}: {value}\r\n")
        else:
            parts.append(f"{wkey}: {_escaped(key, value)}\r\n")


def finish(parts: list[str], body: object) -> bytes:
    """Close the header block in ``parts`` and return the box's bytes (body appended)."""
    if body is None:
        parts.append("\r\n")
        return _encode(parts)
    if not isinstance(body, bytes | bytearray | memoryview):
        raise SerializationError(f"Box.body must be bytes, not {type(body).__name__}")
    raw = bytes(body)
    parts.append(f"-Length: {len(raw)}\r\n\r\n")
    return _encode(parts) + raw


def _encode(parts: list[str]) -> bytes:
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SerializationError(f"box text cannot be encoded as UTF-8: {exc}") from None


def serialize_box(box: Mapping[str, str]) -> bytes:
    """Return the wire bytes of ``box``: its header lines, a blank line, then its body if any.

    Raises:
        SerializationError: a key or value cannot be written without corrupting the stream.
    """
    parts: list[str] = []
    append_fields(parts, box)
    return finish(parts, getattr(box, "body", None))
