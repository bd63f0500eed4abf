"""The fake children: a worker answering from a script, and a worker served in memory."""

from __future__ import annotations

import dataclasses
import inspect
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from juicectl._log import get_logger
from juicectl._pipe import PipeTransport
from juicectl.child import serve
from juicectl.child._io import CHUNK
from juicectl.connection import Connection, ConnectionLoss
from juicectl.exceptions import ProcessUnavailable, ProtocolError
from juicectl.juice import (
    UNHANDLED_CODE,
    ArgumentError,
    Command,
    Limits,
    RemoteJuiceError,
    Shutdown,
    UnhandledRemoteJuiceError,
    command_key,
    raw_command,
)
from juicectl.policy import ConnectionOptions
from juicectl.testing._checks import check_concurrency, check_worker

log = get_logger(__name__)

#: The connection options' defaults, for the keywords of connect().
_DEFAULTS = ConnectionOptions()


class _Crash:
    """The type of :data:`CRASH`."""

    def __repr__(self) -> str:
        return "CRASH"


CRASH: Any = _Crash()
"""A scripted answer: the in-memory child "dies" while handling the request. The request,
and every other one in flight, fails with ``ProcessUnavailable``, as when a child process is
killed; a ``FakeController`` then sees its child gone and starts a new one on the next
``get_process()``."""


class _CodedError(Exception):
    """A script's ``RemoteJuiceError``, carried to the runtime: its text is the description."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code


class _Crashed(Exception):
    """Raised by a handler whose child a scripted :data:`CRASH` has just killed: declared by
    every scripted command, so the runtime answers it quietly, and the answer goes nowhere
    (the child's output died with it)."""


class _ScriptMistake(Exception):
    """A script's answer that no worker could give, found only when the request came (what a
    function returned, or arguments it cannot take): its text is what the test sees."""


class _ScriptedErrors:
    """Mixed into scripted commands: a ``RemoteJuiceError`` raised by a script is answered
    with its own code and description, as if the worker had declared it; a script's mistake
    is answered ``UNHANDLED``, as a worker's bug is, but described, so that the test that
    made it reads what it is."""

    @classmethod
    def error_code(cls, error: BaseException) -> tuple[str, bool] | None:
        if isinstance(error, _CodedError):
            return error.code, False
        if isinstance(error, _Crashed):
            return "CRASHED", False
        if isinstance(error, _ScriptMistake):
            return UNHANDLED_CODE, True
        parent: Any = super()
        result: tuple[str, bool] | None = parent.error_code(error)
        return result


def _scripted_command(command: type[Command] | str) -> type[Command]:
    base: type[Command] = raw_command(command) if isinstance(command, str) else command
    if not (isinstance(base, type) and issubclass(base, Command)):
        raise TypeError(f"a script is keyed by Command classes or names, not {command!r}")
    scripted = type(
        base.__name__,
        (_ScriptedErrors, base),
        {"command_name": base.command_name, "__module__": __name__},
    )
    assert issubclass(scripted, Command)
    return scripted


class ScriptedChild:
    """A worker that answers from a script: ``{command: answer}``.

    Keys are ``Command`` classes (arguments arrive typed, the answer is written with the
    command's ``response`` types) or command names (arguments arrive as text, and the answer's
    values are written with ``str()``). An answer is one of:

    * a mapping of response fields (``None`` for an empty answer);
    * an exception (instance or class) to raise: one the command declares is answered with
      its code and the child keeps serving; a ``RemoteJuiceError(code, description)`` is
      answered with that code; anything else is answered ``UNHANDLED`` and ends the
      conversation, exactly as a real worker would;
    * a callable, called with the request's arguments as keyword arguments, that returns the
      answer (or raises);
    * :data:`CRASH`: the in-memory child dies while handling the request;
    * a list of answers: the first call gets the first, and so on; the last one repeats.

    Every request is recorded in :attr:`calls` as ``(command_name, arguments)``, in order.
    Answers can be replaced at any time with :meth:`answer`; commands not in the script are
    unknown to the child (answered ``UNHANDLED``, like a real worker).

    Answers are checked when they are given, here and in :meth:`answer`: a mapping as the
    command's response (a typed one's fields and types, a text one's values), a function
    against the command's arguments (if it declares them). What can only be checked when a
    request comes, what a function returns and, for a command named by text, the arguments
    it takes, is checked then: a mistake is answered ``UNHANDLED`` and ends the conversation,
    as a worker's bug would, with a description that says what is wrong, which the test
    sees in the ``UnhandledRemoteJuiceError`` it gets.

    Raises:
        TypeError: a key is no command, or an answer is none of the above, or a function
            cannot take the command's arguments, or a text command's value is not text.
        ValueError: a command is named twice, a list of answers is empty, or a mapping does
            not fit the command's response (the message is the codec's: ``unknown 'valeu'``).

    Example::

        child = ScriptedChild({Echo: lambda value: {"value": value.upper()},
                               "Ping": {"pong": "yes"},
                               Index: FileNotFoundError("no such file"),
                               Search: [CRASH, {"hits": []}]})
    """

    concurrency = 1

    def __init__(self, script: Mapping[type[Command] | str, Any] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        """Every request received, as ``(command_name, arguments)``."""
        self._lock = threading.Lock()
        self._answers: dict[str, Any] = {}
        self._served: dict[str, int] = {}
        self._commands: dict[str, type[Command]] = {}
        self._crash: Callable[[], None] | None = None
        for command, answer in (script or {}).items():
            self._add(command, answer)

    def _add(self, command: type[Command] | str, answer: Any) -> None:
        scripted = _scripted_command(command)
        key = command_key(scripted.command_name)
        if key in self._commands:
            raise ValueError(f"the script names {scripted.command_name!r} twice")
        _check_answer(scripted, answer)
        self._commands[key] = scripted
        self._answers[key] = answer

        def handler(**arguments: Any) -> Any:
            return self._respond(key, scripted, arguments)

        # The child runtime finds responders among the instance's attributes too.
        setattr(self, f"_scripted_{len(self._commands)}", scripted.responder(handler))

    def answer(self, command: type[Command] | str, answer: Any) -> None:
        """Replace the answer to ``command`` (which the script must already name); the
        answer is checked as the constructor checks it."""
        name = command if isinstance(command, str) else command.command_name
        key = command_key(name)
        with self._lock:
            if key not in self._answers:
                raise KeyError(
                    f"{name!r} is not in the script: script every command when creating the "
                    "ScriptedChild"
                )
            _check_answer(self._commands[key], answer)
            self._answers[key] = answer
            self._served[key] = 0

    def calls_to(self, command: type[Command] | str) -> list[dict[str, Any]]:
        """The arguments of every request for ``command``, in order."""
        name = command if isinstance(command, str) else command.command_name
        key = command_key(name)
        with self._lock:
            return [arguments for called, arguments in self.calls if command_key(called) == key]

    def _respond(self, key: str, command: type[Command], arguments: dict[str, Any]) -> Any:
        with self._lock:
            self.calls.append((command.command_name, dict(arguments)))
            answer = self._answers[key]
            if isinstance(answer, list):
                served = self._served.get(key, 0)
                self._served[key] = served + 1
                answer = answer[min(served, len(answer) - 1)]  # never empty: checked
            crash = self._crash
        if answer is CRASH:
            if crash is None:
                raise RuntimeError("CRASH needs the ScriptedChild to be served in memory")
            crash()
            raise _Crashed  # not an answer built from nothing: that would fail, and be logged
        try:
            return self._answer_with(answer, command, arguments)
        except UnhandledRemoteJuiceError:
            raise  # answered UNHANDLED, and the conversation ends, as the runtime does
        except RemoteJuiceError as error:
            raise _CodedError(error.code, error.description) from error

    def _answer_with(self, answer: Any, command: type[Command], arguments: dict[str, Any]) -> Any:
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, type) and issubclass(answer, BaseException):
            raise answer()
        what = f"the script's answer to {command.command_name}"
        try:
            if callable(answer):
                _check_call(answer, arguments, what)
                answer = answer(**arguments)
                what = f"what {what} returned"
            return _response(command, answer, what)
        except _Mistake as mistake:
            raise _ScriptMistake(str(mistake)) from None

    def _bind_crash(self, crash: Callable[[], None]) -> None:
        # The in-memory child serving this worker now: what CRASH kills.
        with self._lock:
            self._crash = crash

    def __repr__(self) -> str:
        names = ", ".join(command.command_name for command in self._commands.values())
        return f"<ScriptedChild {names}>"


class _Mistake(Exception):
    """A script's answer does not fit its command (``TypeError`` or ``ValueError`` at the
    door, a described ``UNHANDLED`` answer once a request came)."""

    def __init__(self, message: str, kind: type[Exception]) -> None:
        super().__init__(message)
        self.kind = kind


def _check_answer(command: type[Command], answer: Any) -> None:
    """At the door: raise ``TypeError`` or ``ValueError`` for an answer ``command`` cannot
    be given (see :class:`ScriptedChild`)."""
    what = f"the script's answer to {command.command_name}"
    try:
        if not isinstance(answer, list):
            _check_one(command, answer, what)
            return
        if not answer:
            raise _Mistake(f"{what} is an empty list: give one answer at least", ValueError)
        for number, each in enumerate(answer, 1):
            _check_one(command, each, f"{what} (number {number} of the list)")
    except _Mistake as mistake:
        raise mistake.kind(str(mistake)) from None


def _check_one(command: type[Command], answer: Any, what: str) -> None:
    if answer is CRASH or isinstance(answer, BaseException):
        return
    if isinstance(answer, type) and issubclass(answer, BaseException):
        return
    if callable(answer):
        if not _is_text_command(command) and _gets_declared_arguments(command):
            # Every declared argument reaches the function (a missing optional one as None).
            _check_call(answer, {name: None for name, _ in command.arguments}, what)
        return
    if answer is None or isinstance(answer, Mapping):
        _response(command, answer, what)
        return
    raise _Mistake(
        f"{what} is {answer!r}: an answer is a mapping of response fields, None, an "
        "exception, a function of the arguments, CRASH, or a list of these",
        TypeError,
    )


def _gets_declared_arguments(command: type[Command]) -> bool:
    # Not so for a command that parses its own arguments: it may hand a handler other names.
    return getattr(command.parse_arguments, "__func__", None) is _COMMAND_PARSE_ARGUMENTS


_COMMAND_PARSE_ARGUMENTS = getattr(Command.parse_arguments, "__func__", None)


def _check_call(function: Callable[..., Any], arguments: Mapping[str, Any], what: str) -> None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return  # no signature to read (some builtins): the call will tell
    try:
        signature.bind(**arguments)
    except TypeError as error:
        names = ", ".join(arguments) or "none"
        raise _Mistake(
            f"{what} is a function that cannot take the request's arguments ({names}): "
            f"{error}",
            TypeError,
        ) from None


def _response(command: type[Command], answer: Any, what: str) -> Mapping[str, Any]:
    """The response fields ``answer`` gives, checked as the runtime will check them."""
    if answer is not None and not isinstance(answer, Mapping):
        raise _Mistake(f"{what} is {answer!r}, not a mapping of response fields", TypeError)
    fields: Mapping[str, Any] = answer if answer is not None else {}
    if _is_text_command(command):
        try:
            fields = {name: _text(value) for name, value in fields.items()}
        except TypeError as error:
            raise _Mistake(f"{what}: {error}", TypeError) from None
    try:
        command.make_response(fields)
    except ArgumentError as error:
        raise _Mistake(f"{what}: {error}", ValueError) from None
    return fields


def _is_text_command(command: type[Command]) -> bool:
    from juicectl.juice import RawCommand

    return issubclass(command, RawCommand)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | Path):
        return str(value)
    raise TypeError(
        f"{value!r} cannot be sent as text: key the script by the Command class to send "
        "typed values"
    )


class _Killed(BaseException):
    """Raised where the runtime reads a killed child's input. Not an ``Exception``: it
    unwinds ``serve()`` past the handlers' ``except Exception``, as the death of a process
    ends it, with nothing answered or logged on the way."""


class _ChildInput:
    """The child runtime's input: the pipe from the parent, until the child is killed."""

    def __init__(self, fd: int, killed: threading.Event) -> None:
        self._fd = fd
        self._killed = killed
        self._read = os.read  # bound now, as the runtime binds its own reads when it starts

    def fileno(self) -> int:
        """The pipe's descriptor, for the runtime to wait on (a kill closes its other end,
        so a waiting runtime wakes)."""
        return self._fd

    def read(self, size: int = CHUNK) -> bytes:
        """What the parent wrote; ``_Killed`` once the child is killed."""
        if self._killed.is_set():
            raise _Killed
        data = self._read(self._fd, size)
        if self._killed.is_set():
            raise _Killed
        return data


class _ChildOutput:
    """The child runtime's output: the pipe to the parent, which a kill closes at once, as
    a dead process's stdout closes (a write under way finishes first; later ones fail)."""

    def __init__(self, fd: int) -> None:
        self._pipe = PipeTransport(fd)

    def write(self, data: bytes) -> None:
        """Write every byte, or raise ``BrokenPipeError`` once closed."""
        self._pipe.write(data)

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        """Close the pipe (again: nothing)."""
        self._pipe.close()


class InMemoryChild:
    """A worker served by the child runtime on threads of this process, and its connection.

    Use :func:`connect` to make one. The parent side is a real :class:`Connection`; the child
    side is the real runtime (:func:`juicectl.child.serve`); bytes travel through two pipes,
    so requests, answers, errors, ``Shutdown`` and the end of the conversation behave as with
    a child process. What a process would add (signals, exit codes, stderr) does not exist.

    Args:
        worker: the worker object to serve.
        name: a name for logs and errors.
        generation: a number for logs (a ``FakeController`` counts its children).
        options: the connection's ``ConnectionOptions`` (their ``limits`` bound both ways);
            busy polling is always off here: both sides share one GIL, and a spin on one side
            only slows the other.
        concurrency: how many handlers the runtime runs at once (default: the worker's).
        on_end: called on the reader's thread once the conversation has ended (the parent
            read the child's last byte), before the connection is marked lost; a
            ``FakeController``'s process actor reports the end from it.
        crash: what a :class:`ScriptedChild` answering :data:`CRASH` does, on the handler's
            thread (default: :meth:`kill`); it must not return before the connection is lost.

    Attributes:
        connection: the parent's side.
        worker: the worker object being served.
        generation: the number given at creation.
    """

    def __init__(
        self,
        worker: object,
        *,
        name: str = "in-memory",
        generation: int = 1,
        options: ConnectionOptions | None = None,
        concurrency: int | None = None,
        on_end: Callable[[], None] | None = None,
        crash: Callable[[], None] | None = None,
    ) -> None:
        options = dataclasses.replace(options or ConnectionOptions(), busy_poll=0)
        self.worker = worker
        self.name = name
        self.generation = generation
        self.protocol_error: ProtocolError | None = None
        """A protocol error the child runtime raised (the parent sent bytes that are not
        Juice), if any."""
        self._log = log.bind(controller=name, generation=generation)
        to_child_read, to_child_write = os.pipe()
        self._from_child, from_child_write = os.pipe()
        self._input = PipeTransport(to_child_write)
        self._lost: ProcessUnavailable | None = None
        self._on_end = on_end
        self.connection = Connection(
            self._input,
            pid=0,
            generation=generation,
            name=name,
            options=options,
            on_lost=self._lost_because,
        )
        self._killed = threading.Event()
        self._child_output = _ChildOutput(from_child_write)
        if isinstance(worker, ScriptedChild):
            worker._bind_crash(crash or (lambda: self.kill("crashed (scripted)")))
        self._serving = threading.Thread(
            target=self._serve,
            args=(to_child_read, concurrency, options.limits),
            name=f"juicectl-{name}-{generation}-child",
            daemon=True,
        )
        self._reading = threading.Thread(
            target=self._read, name=f"juicectl-{name}-{generation}-reader", daemon=True
        )
        self._serving.start()
        self._reading.start()

    # -- the child's side (the runtime, on its own thread) -------------------------------

    def _serve(self, read_fd: int, concurrency: int | None, limits: Limits | None) -> None:
        try:
            serve(
                self.worker,
                _ChildInput(read_fd, self._killed),
                self._child_output,
                concurrency=concurrency,
                limits=limits,
                busy_poll=0,
            )
        except _Killed:
            pass  # the runtime has closed its output on the way out
        except ProtocolError as error:
            self.protocol_error = error
        except Exception:
            self._log.exception("in_memory_child_failed")
            self._child_output.close()  # serve() may not have got to it: end the conversation
        finally:
            os.close(read_fd)

    # -- the parent's side ------------------------------------------------------------------

    def _read(self) -> None:
        fd = self._from_child
        self.connection.serve_reads(fd)
        os.close(fd)
        if self._on_end is not None:
            try:
                self._on_end()
            except Exception:
                self._log.exception("in_memory_on_end_failed")
        self.connection.connection_lost(
            self._lost or ProcessUnavailable(f"in-memory child {self.name} ended")
        )

    def _lost_because(self, loss: ConnectionLoss) -> None:
        # What the process actor does with a child that broke the protocol, or whose input
        # broke: end it (the connection has closed the child's input already).
        self._lost = ProcessUnavailable(f"in-memory child {self.name}: {loss.error}")
        self.connection.connection_lost(self._lost)

    def close_input(self) -> None:
        """Close the child's input, as closing a child process's stdin does: the runtime
        answers what it has read, then ends the conversation."""
        self._input.close()

    # -- ending -------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """Whether the conversation goes on (the runtime still serves the worker)."""
        return self._reading.is_alive() and not self.connection.closed

    def stop(self, timeout: float = 5.0) -> str:
        """End the conversation as a controller does: ``Shutdown``, then close the input.

        Returns ``"clean"`` if the child answered ``Shutdown``, ``"exited"`` if the
        conversation had already ended, ``"killed"`` if the child did not end in time (then it
        is killed: see :meth:`kill` for the handler left running).
        """
        how = "exited"
        if not self.connection.closed:
            try:
                self.connection.call(Shutdown, timeout=timeout).get(timeout=timeout + 1)
                how = "clean"
            except Exception as error:
                self._log.debug("in_memory_shutdown_failed", error=repr(error))
        self.close_input()
        self._reading.join(timeout)
        self._serving.join(timeout)
        if self._reading.is_alive() or self._serving.is_alive():
            self.kill("did not end after Shutdown")
            return "killed"
        return how

    def kill(self, reason: str = "killed") -> None:
        """End the conversation at once, as if the child had died: every request in flight
        fails with ``ProcessUnavailable``, and both pipes close. The runtime stops reading,
        so the child's thread ends, and the parent's reader reaches the end of the output and
        ends; a handler already running cannot be stopped (a thread cannot be killed): it
        runs to its end on its thread, and its answer goes nowhere."""
        self._lost = ProcessUnavailable(f"in-memory child {self.name} {reason}")
        self.connection.connection_lost(self._lost)
        self._killed.set()  # before the input closes: the runtime, woken, sees the kill
        self.close_input()
        self._child_output.close()

    def __enter__(self) -> InMemoryChild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "alive" if self.alive else "ended"
        return f"<InMemoryChild {self.name} generation={self.generation} {state}>"


def connect(
    worker: object,
    *,
    name: str = "in-memory",
    responder: object | None = _DEFAULTS.responder,
    request_timeout: float | None = _DEFAULTS.request_timeout,
    max_in_flight: int = _DEFAULTS.max_in_flight,
    limits: Limits | None = _DEFAULTS.limits,
    concurrency: int | None = None,
) -> InMemoryChild:
    """Serve ``worker`` in memory and return the pair; ``.connection`` is the parent's side.

    ``worker`` is a worker class (instantiated here), a worker instance, or a
    :class:`ScriptedChild`. ``responder``, ``request_timeout``, ``max_in_flight`` and
    ``limits`` are the connection's options (see ``juicectl.policy.ConnectionOptions``);
    ``concurrency`` is the runtime's. Each is checked here, as ``FakeController`` checks it.
    Stop it with ``.stop()`` or use it as a context manager::

        with connect(EchoWorker) as child:
            assert child.connection.call(Echo, value="hi").get(timeout=5) == {"value": "hi"}

    Raises:
        TypeError: ``worker`` is no worker (a str, None, an object that answers nothing), or
            an option has the wrong type.
        ValueError: an option is out of its range.
    """
    check_worker(worker)
    check_concurrency(concurrency)
    options = ConnectionOptions(
        responder=responder,
        request_timeout=request_timeout,
        max_in_flight=max_in_flight,
        limits=limits,
    )
    instance = worker() if isinstance(worker, type) else worker
    return InMemoryChild(instance, name=name, options=options, concurrency=concurrency)
