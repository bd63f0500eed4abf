"""Ad-hoc commands: send a command the parent has no class for, and read every field back.

The command line (``juicectl call Echo value=hi``) and the scripted fake child of
:mod:`juicectl.testing` talk about commands by name only. A declared :class:`Command` turns
typed values into text and back and ignores fields it does not declare; an ad-hoc command
sends the given text fields as they are and returns every field of the answer, as text.

Why a subclass rather than a change to the codec: ``Connection`` and the child runtime only
use the class methods ``make_arguments`` / ``parse_response`` (and their mirror images), so
overriding them here is all it takes; the codec keeps one way of doing things.

Part of the codec (no I/O): the fake child of ``juicectl.testing`` uses it too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from juicectl.juice._box import Box, serialize_box
from juicectl.juice._commands import Command
from juicectl.juice._errors import ArgumentError, SerializationError

__all__ = ["RawCommand", "is_raw", "raw_command", "raw_fields", "text_box"]

_BODY = "body"


class RawCommand(Command):
    """Base of ad-hoc commands made by :func:`raw_command`: text fields in, text fields out.

    Arguments and responses are mappings of field names to ``str`` (the ``body`` field travels
    as the box's raw body, UTF-8 encoded). Every field of an answer is returned, keyed as the
    wire normalises it (lower case, ``-`` as ``_``).
    """

    @classmethod
    def make_arguments(cls, kwargs: Mapping[str, Any]) -> Box:
        """Return the request box: each value must be text."""
        return text_box(kwargs, f"{cls.command_name} arguments")

    @classmethod
    def parse_arguments(cls, box: Box) -> dict[str, Any]:
        """Return every field of a received request, as text."""
        return raw_fields(box)

    @classmethod
    def make_response(cls, result: Mapping[str, Any]) -> Box:
        """Return the answer box: each value must be text."""
        return text_box(result, f"{cls.command_name} response")

    @classmethod
    def parse_response(cls, box: Box) -> dict[str, Any]:
        """Return every field of a received answer, as text."""
        return raw_fields(box)


def raw_command(name: str, *, requires_answer: bool = True) -> type[RawCommand]:
    """Return an ad-hoc command class whose ``-Command`` is ``name``.

    Raises:
        ArgumentError: ``name`` is empty or holds CR/LF.
    """
    if not isinstance(name, str) or not name.strip():
        raise ArgumentError(f"a command name must be a non-empty str, not {name!r}")
    class_name = re.sub(r"\W", "_", name.strip()) or "Raw"
    if not class_name[0].isalpha():
        class_name = "Raw_" + class_name
    try:
        return type(
            class_name,
            (RawCommand,),
            {
                "command_name": name.strip(),
                "requires_answer": requires_answer,
                "__module__": __name__,
                "__doc__": f"The ad-hoc command {name.strip()!r} (text fields both ways).",
            },
        )
    except TypeError as exc:
        raise ArgumentError(f"bad command name {name!r}: {exc}") from None


def is_raw(command: type[Command]) -> bool:
    """Whether ``command`` is an ad-hoc (text-only) command."""
    return issubclass(command, RawCommand)


def text_box(fields: Mapping[str, Any], what: str) -> Box:
    """Return a box holding ``fields`` as they are; refuse what could not be written.

    Raises:
        ArgumentError: a value is not ``str``, or a key or value cannot travel on the wire.
    """
    box = Box()
    for key, value in fields.items():
        if not isinstance(key, str) or not key:
            raise ArgumentError(f"{what}: field names must be non-empty str, not {key!r}")
        if key.startswith(("_", "-")):
            raise ArgumentError(f"{what}: {key!r} would be a reserved '-' header")
        if not isinstance(value, str):
            raise ArgumentError(
                f"{what}: {key!r} must be text (str), not {type(value).__name__}: {value!r:.60}"
            )
        if key.lower() == _BODY:
            box.body = value.encode("utf-8")
        else:
            box[key] = value
    try:
        serialize_box(box)  # refuse here what the connection could not write later
    except SerializationError as exc:
        raise ArgumentError(f"{what}: {exc}") from None
    return box


def raw_fields(box: Box) -> dict[str, Any]:
    """Every field of ``box`` as text; a raw body appears as ``body`` (decoded as UTF-8)."""
    fields: dict[str, Any] = {key: value for key, value in box.items() if not key.startswith("_")}
    if box.body is not None:
        fields[_BODY] = box.body.decode("utf-8", "replace")
    return fields
