"""Request bookkeeping shared by both ends: classifying boxes, framing requests and answers,
the table of outgoing calls and what their answers mean, and dispatching requests to handler
methods.

Everything here is sans-IO and synchronous: the parent's connection and the child's runtime
own the streams, threads and locks, and feed boxes through these helpers.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from juicectl.juice._box import Box, append_fields, finish
from juicectl.juice._commands import (
    RESPONDER_ATTRIBUTE,
    Command,
    CommandMatcher,
    Negotiate,
    command_key,
)
from juicectl.juice._errors import (
    JuicectlError,
    LimitExceeded,
    MalformedBox,
    SerializationError,
)
from juicectl.juice._fit import check_answer, check_request, fit_description
from juicectl.juice._frozen import FrozenRecord
from juicectl.juice._parser import Limits

__all__ = [
    "LATE_MEMORY",
    "LIMIT_EXCEEDED_CODE",
    "UNHANDLED_CODE",
    "UNHANDLED_DESCRIPTION",
    "Answer",
    "ErrorAnswer",
    "Reply",
    "Request",
    "RequestTable",
    "Responders",
    "answer_bytes",
    "answer_outcome",
    "classify",
    "error_bytes",
    "request_bytes",
]

W = TypeVar("W")

#: The code and description the reference sends for unknown commands and undeclared errors.
UNHANDLED_CODE = "UNHANDLED"
UNHANDLED_DESCRIPTION = "Unhandled Remote System Exception "
#: The code of the error answer sent instead of an answer that would break the peer's limits
#: (the description names the field, its size and the limit); the connection goes on.
LIMIT_EXCEEDED_CODE = "LIMIT_EXCEEDED"

#: Protocol versions the built-in Negotiate responder accepts (the reference knows only 1).
VERSIONS = (1,)

_NEWLINES = re.compile(r"\r\n|\r|\n")


_set = object.__setattr__  # how the records below fill their fields (they are frozen)


class Answer(FrozenRecord):
    """A successful answer (``-Answer``)."""

    __match_args__ = ("tag", "box")
    __slots__ = __match_args__

    tag: str
    """The ``-Answer`` tag: the ``-Ask`` of the request it answers."""
    box: Box
    """The response fields (``-`` headers removed), body included."""

    def __init__(self, tag: str, box: Box) -> None:
        _set(self, "tag", tag)
        _set(self, "box", box)


class ErrorAnswer(FrozenRecord):
    """A failed answer (``-Error``)."""

    __match_args__ = ("tag", "code", "description")
    __slots__ = __match_args__

    tag: str
    """The ``-Error`` tag: the ``-Ask`` of the request it answers."""
    code: str
    """The ``-Error-Code``, e.g. ``UNHANDLED``."""
    description: str
    """The ``-Error-Description`` (empty if the peer sent none)."""

    def __init__(self, tag: str, code: str, description: str) -> None:
        _set(self, "tag", tag)
        _set(self, "code", code)
        _set(self, "description", description)


class Request(FrozenRecord):
    """A request (``-Command``) from the peer."""

    __match_args__ = ("command", "tag", "box")
    __slots__ = __match_args__

    command: str
    """The ``-Command`` name, as sent."""
    tag: str | None
    """The ``-Ask`` tag, or ``None`` when no answer is wanted."""
    box: Box
    """The argument fields (``-`` headers removed), body included."""

    def __init__(self, command: str, tag: str | None, box: Box) -> None:
        _set(self, "command", command)
        _set(self, "tag", tag)
        _set(self, "box", box)


_new_box = dict.__new__


def _fields(box: Box) -> Box:
    # One pass, one new box (made without Box.__init__: this runs for every message).
    fields: Box = _new_box(Box)
    for key, value in box.items():
        if key[:1] != "_":
            fields[key] = value
    body = box.body
    if body is not None:
        fields.body = body
    return fields


#: Command's own parsers, which read only the declared fields.
_OWN_PARSE_ARGUMENTS = getattr(Command.parse_arguments, "__func__", None)
_OWN_PARSE_RESPONSE = getattr(Command.parse_response, "__func__", None)


#: Command class -> whether its parser is Command's own, for the classes seen (bounded: ad-hoc
#: command classes are made at run time). Asked for every request and every answer.
_OWN_ARGUMENTS_PARSER: dict[type[Command], bool] = {}
_OWN_RESPONSE_PARSER: dict[type[Command], bool] = {}
_OWN_PARSERS_MAX = 1024


def _has_own_parser(
    command: type[Command], known: dict[type[Command], bool], method: str, own: object
) -> bool:
    found = known.get(command)
    if found is None:
        found = getattr(getattr(command, method), "__func__", None) is own
        if len(known) < _OWN_PARSERS_MAX:
            known[command] = found
    return found


def parse_received_arguments(command: type[Command], box: Box) -> dict[str, Any]:
    """``command.parse_arguments`` of a request box as received, ``-`` headers and all.

    Command's own parser reads only the declared fields, so the box goes to it as it is, with
    no copy; an override may read every field, and gets the fields alone (as in
    ``Request.box``).
    """
    if not _has_own_parser(command, _OWN_ARGUMENTS_PARSER, "parse_arguments",
                           _OWN_PARSE_ARGUMENTS):
        box = _fields(box)
    return command.parse_arguments(box)


def parse_received_response(command: type[Command], box: Box) -> dict[str, Any]:
    """``command.parse_response`` of an answer box as received (see
    :func:`parse_received_arguments`; an override gets the fields alone, as in ``Answer.box``)."""
    if not _has_own_parser(command, _OWN_RESPONSE_PARSER, "parse_response",
                           _OWN_PARSE_RESPONSE):
        box = _fields(box)
    return command.parse_response(box)


def classify(box: Box) -> Answer | ErrorAnswer | Request:
    """Tell what a received box is: an answer, an error answer or a request.

    Checked in the reference's order: ``-Answer``, then ``-Error``, then ``-Command``.

    Raises:
        MalformedBox: the box has none of those headers, or an error lacks ``-Error-Code``.
    """
    tag = box.get("_answer")
    if tag is not None:
        return Answer(tag, _fields(box))
    tag = box.get("_error")
    if tag is not None:
        code = box.get("_error_code")
        if code is None:
            raise MalformedBox(f"error answer {tag!r} has no -Error-Code")
        return ErrorAnswer(tag, code, box.get("_error_description", ""))
    name = box.get("_command")
    if name is not None:
        return Request(name, box.get("_ask"), _fields(box))
    keys = ", ".join(sorted(box)[:8])
    raise MalformedBox(f"box has none of -Command, -Answer, -Error (keys: {keys or 'none'})")


def request_bytes(
    command: type[Command], tag: str | None, arguments: Box, limits: Limits | None = None
) -> bytes:
    """Return the bytes of a request: ``-Command``, ``-Ask`` (when ``tag``), the fields.

    With ``limits`` (the peer's), a request that would break them raises ``LimitExceeded``
    (naming the field, its size and the limit) before any of it is serialized.
    """
    if limits is not None:
        # The quick answer for the usual request, inline (this runs for every request); see
        # far_below in _fit.py for why these sums bound every size the parser counts.
        try:
            chars = len(command.command_name) + (0 if tag is None else len(tag))
            for key, value in arguments.items():
                chars += len(key) + len(value)
        except TypeError:
            chars = -1  # not text: the serializer says what is wrong with it
        if not (
            arguments.body is None
            and 4 * (chars + len(arguments)) + 32 <= limits.max_line_length
            and len(arguments) + 2 + chars // 2 <= limits.max_headers
        ) and chars >= 0:
            check_request(limits, command.command_name, tag, arguments)
    if tag is None:
        parts = [f"-Command: {command.command_name}\r\n"]
    elif type(tag) is str and "\r" not in tag and "\n" not in tag:
        # The usual tag ("1", "2", ... in hex) needs no escaping: one string for both lines.
        parts = [f"-Command: {command.command_name}\r\n-Ask: {tag}\r\n"]
    else:
        parts = [f"-Command: {command.command_name}\r\n"]
        append_fields(parts, {"_ask": tag})
    append_fields(parts, arguments)
    body = arguments.body
    if body is None:
        # finish(), inlined for the usual request without a body: two calls less each.
        parts.append("\r\n")
        try:
            return "".join(parts).encode()
        except UnicodeEncodeError as exc:
            raise SerializationError(f"box text cannot be encoded as UTF-8: {exc}") from None
    return finish(parts, body)


def answer_bytes(tag: str, response: Box, limits: Limits | None = None) -> bytes:
    """Return the bytes of a successful answer: the fields, then ``-Answer`` (as the reference).

    With ``limits`` (the peer's), an answer that would break them raises ``LimitExceeded``
    before any of it is serialized (see :func:`request_bytes`).
    """
    if limits is not None:
        check_answer(limits, tag, response)
    parts: list[str] = []
    append_fields(parts, response)
    if type(tag) is str and "\r" not in tag and "\n" not in tag:
        parts.append(f"-Answer: {tag}\r\n")  # the usual tag needs no escaping
    else:
        append_fields(parts, {"_answer": tag})
    return finish(parts, response.body)


def error_bytes(tag: str, code: str, description: str, limits: Limits | None = None) -> bytes:
    """Return the bytes of an error answer, in the reference's header order.

    Lone CR or LF in ``description`` become CRLF, and text that UTF-8 cannot encode (a lone
    surrogate: a file name of undecodable bytes, as ``os`` gives it) is escaped
    (``\\udcff``), so any exception text can be sent. With ``limits`` (the peer's), a
    description too long for them is cut short (saying how much was left out): an error
    answer always gets through.
    """
    if not description.isascii():
        try:
            description.encode("utf-8")
        except UnicodeEncodeError:
            description = description.encode("utf-8", "backslashreplace").decode("utf-8")
    if "\r" in description or "\n" in description:
        description = _NEWLINES.sub("\r\n", description)
    if limits is not None:
        description = fit_description(description, limits)
    parts: list[str] = []
    append_fields(parts, {"_error": tag, "_error_description": description, "_error_code": code})
    return finish(parts, None)


#: How many given-up tags a ``RequestTable`` remembers, to tell a late answer from a bogus one.
LATE_MEMORY = 1024


class RequestTable(Generic[W]):
    """Outgoing calls by tag, each with its command and a waiter of the owner's choice.

    The one table of both ends: the parent's connection and the child's calls to its parent.
    It also remembers the last ``late_memory`` tags given up on (timed out), so that an answer
    that comes too late can be told from an answer for a tag never asked.

    Not thread-safe: the owner holds its own lock around it.
    """

    def __init__(self, late_memory: int = LATE_MEMORY) -> None:
        self._counter = 0
        self._waiting: dict[str, tuple[type[Command], W]] = {}
        self._late: OrderedDict[str, None] = OrderedDict()
        self._late_memory = late_memory

    def next_tag(self) -> str:
        """Return a fresh tag: ``"1"``, ``"2"``, ..., ``"a"``, ... (lowercase hex)."""
        self._counter += 1
        return f"{self._counter:x}"

    def add(self, tag: str, command: type[Command], waiter: W) -> None:
        """Remember that ``tag`` awaits an answer to ``command``."""
        if tag in self._waiting:
            raise ValueError(f"tag {tag!r} is already outstanding")
        self._waiting[tag] = (command, waiter)

    def open(self, command: type[Command], waiter: W) -> str:
        """Give a new call of ``command`` a fresh tag, remember it, and return the tag."""
        self._counter += 1
        tag = f"{self._counter:x}"  # fresh by construction: no check needed (see add())
        self._waiting[tag] = (command, waiter)
        return tag

    def pop(self, tag: str) -> tuple[type[Command], W] | None:
        """Forget ``tag`` and return its command and waiter, or ``None`` if unknown."""
        return self._waiting.pop(tag, None)

    def give_up(self, tag: str) -> tuple[type[Command], W] | None:
        """Forget ``tag`` as :meth:`pop` does, remembering it as given up on (its call timed
        out): its answer may still come, late (see :meth:`was_late`)."""
        popped = self._waiting.pop(tag, None)
        if popped is not None:
            late = self._late
            late[tag] = None
            if len(late) > self._late_memory:
                late.popitem(last=False)
        return popped

    def was_late(self, tag: str) -> bool:
        """Whether ``tag`` (answered, and unknown to :meth:`pop`) was given up on; it is
        forgotten then, since a tag is answered once."""
        if tag in self._late:
            del self._late[tag]
            return True
        return False

    def drain(self) -> list[W]:
        """Return every waiter and empty the table (the connection has ended)."""
        waiters = [waiter for _, waiter in self._waiting.values()]
        self._waiting.clear()
        return waiters

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, tag: object) -> bool:
        return tag in self._waiting


def answer_outcome(
    command: type[Command], answer: Box | Answer | ErrorAnswer
) -> dict[str, Any] | BaseException:
    """What the answer to a call of ``command`` means: its response fields, or the exception
    it stands for. Both ends settle their calls' waiters with this, and it never raises.

    ``answer`` is an answer box as received (``-`` headers and all), an :class:`Answer`, or an
    :class:`ErrorAnswer`. An error answer gives the exception ``command`` declares for its
    code (:meth:`Command.error_from_code`); an answer whose fields do not parse gives the
    exception the parsing raised (an ``ArgumentError``, or whatever an overriding
    ``parse_response`` raises).
    """
    if type(answer) is not Box:  # the usual answer is a Box as received: no test for it
        if isinstance(answer, ErrorAnswer):
            return command.error_from_code(answer.code, answer.description)
        if isinstance(answer, Answer):
            answer = answer.box
    try:
        return parse_received_response(command, answer)
    except Exception as error:
        return error


class Reply(FrozenRecord):
    """What to do after handling a request."""

    __match_args__ = ("data", "close", "error")
    __slots__ = __match_args__

    data: bytes | None
    """The bytes to write back, or ``None`` (the request had no ``-Ask``)."""
    close: bool
    """Whether to close the connection after writing (unhandled or fatal errors)."""
    error: BaseException | None
    """The exception the request failed with, for logging; ``None`` on success."""

    def __init__(
        self, data: bytes | None, close: bool, error: BaseException | None = None
    ) -> None:
        _set(self, "data", data)
        _set(self, "close", close)
        _set(self, "error", error)


class _IncompatibleVersions(JuicectlError):
    """No version offered in a Negotiate request is known here."""


def _negotiate(versions: list[int]) -> dict[str, Any]:
    for version in versions:
        if version in VERSIONS:
            return {"version": version}
    raise _IncompatibleVersions(f"no supported version among {versions!r}")


Handler = Callable[..., Any]


class Responders:
    """Dispatch of incoming requests to handler methods marked with ``Command.responder``.

    Args:
        handler_object: the object whose methods answer requests (``None``: built-ins only).
        builtins: whether to answer ``Negotiate`` (a handler for it takes precedence).
        limits: the peer's limits (None: unchecked). An answer that would break them is not
            sent: an error answer with ``LIMIT_EXCEEDED_CODE`` goes instead, naming the field,
            its size and the limit, and the connection goes on. An error description too
            long for them is cut short.

    Raises:
        TypeError: one class marks two methods as responders for the same command.
    """

    def __init__(
        self, handler_object: object | None, *, builtins: bool = True,
        limits: Limits | None = None,
    ) -> None:
        self._limits = limits
        entries: dict[str, tuple[type[Command], Handler]] = {}
        if builtins:
            entries[command_key(Negotiate.command_name)] = (Negotiate, _negotiate)
        if handler_object is not None:
            entries.update(_find_responders(handler_object))
        self._entries = entries
        self._matcher = CommandMatcher(entries)

    def lookup(self, command_name: str) -> tuple[type[Command], Handler] | None:
        """Return the command class and handler for a ``-Command`` name, or ``None``
        (matched as :class:`CommandMatcher` matches)."""
        return self._matcher.lookup(command_name)

    @property
    def commands(self) -> list[type[Command]]:
        """The commands answered here."""
        return [command for command, _ in self._entries.values()]

    def handle(self, request: Request) -> Reply:
        """Run the handler for ``request`` synchronously and return what to send back.

        An unknown command, arguments that do not parse, or an exception the command does not
        declare give ``UNHANDLED`` and ``close=True``; a declared ``errors`` exception gives its
        code and ``close=False``; a ``fatal_errors`` one gives its code and ``close=True``; an
        answer past the peer's limits gives ``LIMIT_EXCEEDED_CODE`` and ``close=False``.
        """
        reply = self.answer(request.command, request.tag, request.box)
        return Reply(reply, False) if isinstance(reply, bytes) else reply

    def answer(self, command_name: str, tag: str | None, box: Box) -> bytes | Reply:
        """:meth:`handle`, for a request box as received, ``-`` headers and all (see
        :func:`parse_received_arguments`). The usual outcome, an answer, comes back as its bytes
        alone; anything else as a :class:`Reply`. The worker's loop calls this for every
        request, so it makes no ``Request`` and no ``Reply`` it does not need."""
        entry = self._matcher.lookup(command_name)
        if entry is None:
            return _unhandled(tag, LookupError(f"no responder for command {command_name!r}"))
        command, handler = entry
        try:
            kwargs = parse_received_arguments(command, box)
        except Exception as exc:
            return _unhandled(tag, exc)
        try:
            result = handler(**kwargs)
        except Exception as exc:
            declared = command.error_code(exc)
            if declared is None:
                return _unhandled(tag, exc)
            code, fatal = declared
            if tag is None:
                return Reply(None, fatal, exc)
            try:
                data = error_bytes(tag, code, str(exc), self._limits)
            except SerializationError:
                return _unhandled(tag, exc)
            return Reply(data, fatal, exc)
        try:
            if result is None:
                result = {}
            elif type(result) is not dict and not isinstance(result, Mapping):
                raise TypeError(
                    f"the {command.command_name} responder returned "
                    f"{type(result).__name__}, not a dict"
                )
            response = command.make_response(result)
            if tag is None:
                return Reply(None, False)
            return answer_bytes(tag, response, self._limits)
        except LimitExceeded as exc:
            # Too big for the peer: refused before a byte was written, so the conversation
            # goes on; the caller learns why.
            assert tag is not None
            text = f"{command.command_name}: {exc}"
            return Reply(error_bytes(tag, LIMIT_EXCEEDED_CODE, text, self._limits), False, exc)
        except Exception as exc:
            return _unhandled(tag, exc)


def _unhandled(tag: str | None, error: BaseException) -> Reply:
    data = None if tag is None else error_bytes(tag, UNHANDLED_CODE, UNHANDLED_DESCRIPTION)
    return Reply(data, True, error)


def _find_responders(handler_object: object) -> dict[str, tuple[type[Command], Handler]]:
    found: dict[str, tuple[type[Command], Handler]] = {}
    seen_names: set[str] = set()
    namespaces: list[Mapping[str, Any]] = []
    instance_dict = getattr(handler_object, "__dict__", None)
    if isinstance(instance_dict, Mapping):
        namespaces.append(instance_dict)
    namespaces.extend(vars(klass) for klass in type(handler_object).__mro__)
    for namespace in namespaces:
        claimed: dict[str, str] = {}
        for name, raw in namespace.items():
            if name in seen_names:
                continue
            target = getattr(raw, "__func__", raw)
            command = getattr(target, RESPONDER_ATTRIBUTE, None)
            if not (isinstance(command, type) and issubclass(command, Command)):
                continue
            seen_names.add(name)
            key = command_key(command.command_name)
            if key in claimed:
                raise TypeError(
                    f"{claimed[key]!r} and {name!r} both answer {command.command_name!r}"
                )
            claimed[key] = name
            if key in found:
                continue  # a more derived class already answers it
            found[key] = (command, getattr(handler_object, name))
    return found
