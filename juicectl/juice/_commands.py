"""Commands: what a request carries, what its answer carries, and which errors it may raise.

A command is a class: its ``arguments`` and ``response`` declare the fields, its ``errors`` and
``fatal_errors`` map exception classes to wire codes. The class methods turn keyword arguments
into boxes and boxes back into keyword arguments; the codec never sends anything itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from juicectl.juice._box import Box, check_value
from juicectl.juice._errors import RemoteJuiceError, UnhandledRemoteJuiceError
from juicectl.juice._types import (
    Argument,
    FieldSpec,
    Integer,
    ListOf,
    box_to_fields,
    compile_fields,
    fields_to_box,
)

__all__ = ["Command", "CommandMatcher", "Negotiate", "Shutdown", "command_key", "loose_key"]

F = TypeVar("F", bound=Callable[..., Any])
V = TypeVar("V")

#: The attribute :meth:`Command.responder` sets on a handler function.
RESPONDER_ATTRIBUTE = "__juice_command__"


def command_key(name: str) -> str:
    """Return the form command names are matched in: lower-case, ``-`` as ``_``.

    ``"Set-Store"``, ``"SET_STORE"`` and ``"set_store"`` all give ``"set_store"``.
    """
    return name.strip().lower().replace("-", "_")


def loose_key(name: str) -> str:
    """Return the form in which names that differ only by separators match.

    ``"SetStore"``, ``"Set-Store"`` and ``"set_store"`` all give ``"setstore"``.
    """
    return command_key(name).replace("_", "")


#: How many names, as sent, a matcher remembers (a bound against a hostile peer).
_REMEMBERED_MAX = 256
_UNSEEN: Any = object()


class CommandMatcher(Generic[V]):
    """Finds what is registered under a ``-Command`` name, as a peer spells it.

    The one rule by which both ends match names: exactly by :func:`command_key` (case,
    surrounding space, ``-`` or ``_``), else loosely by :func:`loose_key` (separators ignored,
    so ``SetStore`` finds ``Set-Store``) when only one entry matches loosely. A peer sends the
    same few names again and again, so each name is remembered as sent, found or not (up to
    256 of them): the usual lookup is one dict access.

    Args:
        entries: command name (any spelling) -> value; a value is never None.

    Raises:
        ValueError: two names of ``entries`` are the same name (by ``command_key``).
    """

    def __init__(self, entries: Mapping[str, V]) -> None:
        self._exact: dict[str, V] = {}
        for name, value in entries.items():
            key = command_key(name)
            if key in self._exact:
                raise ValueError(f"{name!r} is the same command name as another one ({key!r})")
            self._exact[key] = value
        loose: dict[str, V | None] = {}
        for key, value in self._exact.items():
            # Two names that differ only by separators: neither matches loosely.
            loose[loose_key(key)] = None if loose_key(key) in loose else value
        self._loose = loose
        self._seen: dict[str, V | None] = {}

    def lookup(self, name: str) -> V | None:
        """The value registered for ``name``, or None."""
        value = self._seen.get(name, _UNSEEN)
        if value is not _UNSEEN:
            return value
        key = command_key(name)
        value = self._exact.get(key)
        if value is None:
            value = self._loose.get(loose_key(key))
        if len(self._seen) < _REMEMBERED_MAX:
            self._seen[name] = value
        return value


def _check_wire_text(text: object, what: str) -> str:
    if not isinstance(text, str) or not text:
        raise TypeError(f"{what} must be a non-empty str, not {text!r}")
    if "\r" in text or "\n" in text or check_value(text) is not None:
        raise TypeError(f"{what} must not contain CR or LF: {text!r}")
    return text


class Command:
    """Base class of commands; subclass it and declare the fields.

    Example::

        class Echo(Command):
            arguments = [("value", String())]
            response = [("value", String())]

    Class attributes:
        command_name: the ``-Command`` value; defaults to the class name.
        arguments: the request fields, ``[(name, Argument), ...]``.
        response: the answer fields.
        errors: exception class -> error code; sent as an error answer, the connection stays.
        fatal_errors: exception class -> error code; sent, then the connection is closed.
        requires_answer: whether requests carry ``-Ask`` (and so get an answer).

    ``Command(**kwargs)`` checks the arguments at once (``ArgumentError``);
    ``.do(connection)`` sends them: it is ``connection.call(type(self), **kwargs)``.
    """

    command_name: ClassVar[str] = "Command"
    arguments: ClassVar[list[tuple[str, Argument]]] = []
    response: ClassVar[list[tuple[str, Argument]]] = []
    errors: ClassVar[dict[type[BaseException], str]] = {}
    fatal_errors: ClassVar[dict[type[BaseException], str]] = {}
    requires_answer: ClassVar[bool] = True

    _argument_specs: ClassVar[tuple[FieldSpec, ...]] = ()
    _response_specs: ClassVar[tuple[FieldSpec, ...]] = ()
    _error_classes: ClassVar[dict[str, type[BaseException]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "command_name" not in cls.__dict__:
            cls.command_name = cls.__name__
        _check_wire_text(cls.command_name, f"{cls.__name__}.command_name")
        cls._argument_specs = compile_fields(cls.arguments, f"{cls.__name__}.arguments")
        cls._response_specs = compile_fields(cls.response, f"{cls.__name__}.response")
        classes: dict[str, type[BaseException]] = {}
        for attribute in ("errors", "fatal_errors"):
            for exc_type, code in getattr(cls, attribute).items():
                if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
                    raise TypeError(f"{cls.__name__}.{attribute}: {exc_type!r} is not an exception")
                _check_wire_text(code, f"{cls.__name__}.{attribute}[{exc_type.__name__}]")
                classes[code] = exc_type
        cls._error_classes = classes

    def __init__(self, **kwargs: Any) -> None:
        type(self).make_arguments(kwargs)
        self.kwargs: dict[str, Any] = kwargs
        """The keyword arguments, as given."""

    def do(self, connection: Any) -> Any:
        """Send this request on ``connection``: ``connection.call(type(self), **kwargs)``."""
        return connection.call(type(self), **self.kwargs)

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self.kwargs.items())
        return f"{type(self).__name__}({args})"

    @classmethod
    def make_arguments(cls, kwargs: Mapping[str, Any]) -> Box:
        """Return the request box (argument fields only) for ``kwargs``.

        Raises:
            ArgumentError: a required argument is missing, one is unknown, or a value has the
                wrong type or cannot be written.
        """
        # The message's name and kind apart: formatted only for an error (this runs for
        # every request).
        return fields_to_box(cls._argument_specs, kwargs, cls.command_name, " arguments")

    @classmethod
    def parse_arguments(cls, box: Box) -> dict[str, Any]:
        """Return the keyword arguments a received request box carries (extra keys ignored)."""
        return box_to_fields(cls._argument_specs, box, cls.command_name, " arguments")

    @classmethod
    def make_response(cls, result: Mapping[str, Any]) -> Box:
        """Return the answer box (response fields only) for a handler's ``result``."""
        return fields_to_box(cls._response_specs, result, cls.command_name, " response")

    @classmethod
    def parse_response(cls, box: Box) -> dict[str, Any]:
        """Return the response fields of a received answer box (extra keys ignored)."""
        return box_to_fields(cls._response_specs, box, cls.command_name, " response")

    @classmethod
    def responder(cls, func: F) -> F:
        """Mark ``func`` (a handler method) as the responder for this command."""
        setattr(func, RESPONDER_ATTRIBUTE, cls)
        return func

    @classmethod
    def error_code(cls, error: BaseException) -> tuple[str, bool] | None:
        """Return ``(code, fatal)`` for an exception the command declares, else ``None``.

        The most specific declared class wins (the exception's MRO is walked in order).
        """
        for klass in type(error).__mro__:
            code = cls.errors.get(klass)
            if code is not None:
                return code, False
            code = cls.fatal_errors.get(klass)
            if code is not None:
                return code, True
        return None

    @classmethod
    def error_from_code(cls, code: str, description: str) -> BaseException:
        """Return the exception an error answer stands for.

        A declared code gives its declared class, built with ``description`` as its only
        argument; ``UNHANDLED`` gives ``UnhandledRemoteJuiceError``; any other code gives
        ``RemoteJuiceError``.
        """
        exc_type = cls._error_classes.get(code)
        if exc_type is not None:
            try:
                return exc_type(description)
            except Exception:
                pass  # a class that cannot take one str: use the generic error
        if code == "UNHANDLED":
            return UnhandledRemoteJuiceError(description)
        return RemoteJuiceError(code, description)


class Negotiate(Command):
    """The reference peer's built-in version negotiation; a good readiness probe.

    ``Versions: 1`` is answered with ``Version: 1``.
    """

    arguments = [("versions", ListOf(Integer()))]
    response = [("version", Integer())]


class Shutdown(Command):
    """Ask a child to answer, close the connection and exit."""
