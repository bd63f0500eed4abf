"""What the ``call`` and ``shell`` programs share: errors, commands by name, running a child."""

from __future__ import annotations

import base64
import importlib
import json
import math
import re
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from types import ModuleType
from typing import Any

import pykka

from juicectl._cli._interrupts import Interrupts, kill_child_groups
from juicectl.connection import Connection
from juicectl.controller import ProcessController
from juicectl.exceptions import (
    ArgumentError,
    ControllerClosed,
    JuicectlError,
    ProcessUnavailable,
    RemoteJuiceError,
    RequestTimeout,
)
from juicectl.juice import Command, command_key, normalize_key, raw_command
from juicectl.messages import ProcessTerminated
from juicectl.policy import RestartPolicy

KILL_TIMEOUT = 2.0
"""Seconds a child gets after SIGTERM (from the controller, or from ``Session.close()``)."""


class UsageError(Exception):
    """A bad command line: exit status 2."""


class Failure(Exception):
    """A failure to report in one line: exit status 1.

    ``ended`` says the child's conversation is over (it answered ``UNHANDLED`` or went away).
    """

    def __init__(self, message: str, *, ended: bool = False) -> None:
        super().__init__(message)
        self.ended = ended


class OutputError(Exception):
    """stdout could not be written: its reader went away (``broken``), or the write failed."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror or str(error))
        self.broken = isinstance(error, BrokenPipeError)


def write_line(text: str = "") -> None:
    """Print ``text`` and a newline on stdout, at once.

    Raises:
        OutputError: the write failed (a closed pipe, a full disk...).
    """
    try:
        print(text, flush=True)
    except OSError as error:
        raise OutputError(error) from None


@dataclass(frozen=True)
class Timeouts:
    """How long the programs wait for an answer and for the child to be ready (seconds)."""

    answer: float
    startup: float


# --- commands by name --------------------------------------------------------------------


def load_commands(specs: Iterable[str]) -> dict[str, type[Command]]:
    """``--commands`` values -> {command_key: Command class}."""
    found: dict[str, type[Command]] = {}
    for spec in specs:
        module_name, _, attribute = spec.partition(":")
        if str(Path.cwd()) not in sys.path and "" not in sys.path:
            sys.path.insert(0, str(Path.cwd()))  # like python -m: the current directory counts
        try:
            target: Any = importlib.import_module(module_name)
            for part in filter(None, attribute.split(".")):
                target = getattr(target, part)
        except (ImportError, AttributeError, ValueError, TypeError) as error:
            # TypeError: a relative name (".mod"), which has no package to be relative to.
            raise UsageError(f"--commands {spec}: {error}") from None
        except Exception as error:
            # The module itself failed as it was imported: still the option's fault, in a line.
            raise UsageError(
                f"--commands {spec}: importing it raised {type(error).__name__}: "
                f"{one_line(error)}"
            ) from None
        classes = list(_command_classes(target))
        if not classes:
            raise UsageError(f"--commands {spec}: no Command classes there")
        for command in classes:
            found[command_key(command.command_name)] = command
    return found


def _command_classes(target: Any) -> Iterator[type[Command]]:
    if isinstance(target, type):
        if issubclass(target, Command) and target is not Command:
            yield target
        return
    if isinstance(target, ModuleType):
        values: Iterable[Any] = vars(target).values()
    elif isinstance(target, dict):
        values = target.values()
    elif isinstance(target, list | tuple | set | frozenset):
        values = target
    else:
        return
    for value in values:
        if isinstance(value, type) and issubclass(value, Command) and value is not Command:
            if value.__module__.startswith("juicectl.juice"):
                continue  # Negotiate, Shutdown: imported, not the user's
            yield value


def parse_request(
    words: Sequence[str], commands: dict[str, type[Command]]
) -> tuple[type[Command], dict[str, Any]]:
    """``["Echo", "value=hi"]`` -> (the command class, its keyword arguments).

    A declared command converts each value with its argument type; any other name becomes an
    ad-hoc command whose fields are sent as text.

    Raises:
        UsageError: no command name, a word that is not key=value, or a value that does not
            convert.
    """
    if not words:
        raise UsageError("no command given")
    name, *pairs = words
    if "=" in name:
        raise UsageError(f"expected a command name before the arguments, got {name!r}")
    command = commands.get(command_key(name))
    arguments: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            hint = f" (write {pair}=VALUE)" if pair.isidentifier() else ""
            raise UsageError(f"expected key=value, got {pair!r}{hint}")
        arguments[key] = text
    if command is None:
        try:
            return raw_command(name), arguments
        except ArgumentError as error:
            raise UsageError(str(error)) from None
    types = {normalize_key(field): argument for field, argument in command.arguments}
    known = ", ".join(field for field, _ in command.arguments) or "none"
    typed: dict[str, Any] = {}
    for key, text in arguments.items():
        argument = types.get(normalize_key(key))
        if argument is None:
            raise UsageError(f"{command.command_name} has no argument {key!r} (it takes: {known})")
        try:
            typed[key] = argument.from_string(text)
        except (ArgumentError, ValueError, TypeError) as error:
            raise UsageError(f"{command.command_name} {key}={text!r}: {error}") from None
    given = {normalize_key(key) for key in typed}
    missing = [field for field, argument in command.arguments
               if not argument.optional and normalize_key(field) not in given]
    if missing:
        needs = " ".join(f"{field}=..." for field in missing)
        raise UsageError(f"{command.command_name} needs {needs} (it takes: {known})")
    return command, typed


# --- running ---------------------------------------------------------------------------


class _LastExit(pykka.ThreadingActor):
    """Subscribed to the controller: keeps the last ``ProcessTerminated`` (``ask("last")``)."""

    use_daemon_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.last: ProcessTerminated | None = None

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ProcessTerminated):
            self.last = message
        elif message == "last":
            return self.last
        return None


class Session:
    """One child command under a ``ProcessController``, for ``call`` and ``shell``.

    Every wait goes through ``interrupts.wait()``, so Ctrl-C interrupts it (see
    ``_interrupts``); ``close()`` stops the child and the actors, whatever happened.
    """

    def __init__(self, argv: list[str], timeouts: Timeouts, interrupts: Interrupts) -> None:
        if not argv:
            raise UsageError("no child command given (put it after --)")
        self.argv = argv
        self.timeouts = timeouts
        self.interrupts = interrupts
        self._pid: int | None = None
        self._exits = _LastExit.start()
        try:
            self.controller = ProcessController.start(
                argv,
                name="cli",
                restart=RestartPolicy(mode="temporary"),
                startup_timeout=timeouts.startup,
                stop_timeout=5.0,
                kill_timeout=KILL_TIMEOUT,
                subscribers=[self._exits],
            )
        except BaseException:
            self._exits.stop()
            raise
        interrupts.known_pid = lambda: self._pid

    def connect(self) -> Connection:
        """The connection to a ready child (launched if none runs)."""
        startup = self.timeouts.startup
        try:
            with self.interrupts.wait():
                connection: Connection = self.controller.get_process().get(timeout=startup + 5)
        except pykka.Timeout:
            raise Failure(f"the child was not ready within {startup:g} s") from None
        except (ProcessUnavailable, ControllerClosed) as error:
            raise Failure(one_line(error)) from None
        self._pid = connection.pid
        return connection

    def send(
        self, connection: Connection, command: type[Command], arguments: dict[str, Any]
    ) -> dict[str, Any]:
        """Send one request and wait for its answer; every failure becomes a ``Failure``."""
        timeout = self.timeouts.answer
        try:
            future = connection.call_with(command, arguments, timeout=timeout)
            with self.interrupts.wait():
                answer: dict[str, Any] = future.get(timeout=timeout + 5)
        except pykka.Timeout:
            raise Failure(f"{command.command_name}: no answer within {timeout:g} s") from None
        except ArgumentError as error:
            raise UsageError(str(error)) from None
        except RequestTimeout as error:
            raise Failure(str(error)) from None
        except RemoteJuiceError as error:
            raise self._remote_failure(command, error) from None
        except ProcessUnavailable as error:
            raise Failure(f"{command.command_name}: {one_line(error)}", ended=True) from None
        except JuicectlError as error:
            raise Failure(f"{command.command_name}: {one_line(error)}") from None
        except Exception as error:
            # A declared error class of a --commands command.
            raise Failure(
                f"{command.command_name} failed: {type(error).__name__}: {one_line(error)}"
            ) from None
        return answer

    def _remote_failure(self, command: type[Command], error: RemoteJuiceError) -> Failure:
        text = f"{command.command_name} failed: {error.code}: {' '.join(error.description.split())}"
        if error.code != "UNHANDLED":
            return Failure(text)
        # The worker ends its conversation after UNHANDLED (as the reference peer does) and
        # has said why on its stderr: wait for the controller to see it go, then tell.
        self.wait_for_exit()
        said = self.worker_said()
        if said:
            text += f" (the worker's error: {said})"
        else:
            text += " (an unknown command, or an error the worker does not declare)"
        return Failure(text, ended=True)

    def wait_for_exit(self) -> None:
        """Wait (bounded) until the controller has seen the current child go."""
        deadline = time.monotonic() + self.timeouts.answer
        with self.interrupts.wait():
            while self.controller.mode == "ready" and time.monotonic() < deadline:
                time.sleep(0.02)

    def worker_said(self) -> str | None:
        """The error the last child wrote last on its stderr (``Type: message``), if any."""
        try:
            last = self._exits.ask("last", timeout=5)
        except (pykka.Timeout, pykka.ActorDeadError):
            return None
        if not isinstance(last, ProcessTerminated):
            return None
        for line in reversed(last.reason.stderr_tail):
            match = _ERROR_LINE.match(line.strip())
            if match:
                return f"{match.group('type')}: {match.group('message')}"
        return None

    def close(self) -> None:
        """Stop the child (Ctrl-C now kills it on a second press) and every actor."""
        self.interrupts.closing()
        try:
            self._end_a_start()
            self.controller.close()
        finally:
            self._exits.stop()

    def _end_a_start(self) -> None:
        """End a child that is still starting: SIGTERM to its group, SIGKILL after a bound.

        The controller's close lets a start in progress finish (up to ``--startup-timeout``)
        before it stops the child; a program on its way out has nothing to ask a child that
        is not ready, so it does not wait for that. Once the child is gone the controller is
        ``stopped`` and its close is at once. (Linux: the child is found in /proc.)
        """
        signum = signal.SIGTERM
        deadline = time.monotonic() + KILL_TIMEOUT
        while self.controller.mode in ("starting", "waiting_ready"):
            if time.monotonic() >= deadline:
                if signum is signal.SIGKILL:
                    return  # the controller's close has its own bound
                signum, deadline = signal.SIGKILL, time.monotonic() + KILL_TIMEOUT
            # Again on each turn: the launch may not have happened yet when this began.
            kill_child_groups(self.interrupts.known_pid, signum)
            time.sleep(0.05)


_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(?P<type>\w*(?:Error|Exception)\w*): (?P<message>.+)$")
"""The last line of a traceback: ``pkg.module.SomeError: what went wrong``."""


def one_line(error: BaseException) -> str:
    if isinstance(error, ProcessUnavailable):
        text = error.reason
        tail = [line for line in error.stderr_tail if line.strip()]
        if tail:
            text += f" (child's stderr: {tail[-1].strip()})"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def _jsonable(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _finite(value: Any) -> Any:
    # JSON has no number for NaN or the infinities; json.dumps would write NaN and Infinity,
    # which JSON parsers refuse. They go as strings, as JavaScript spells them.
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def to_json(answer: Any) -> str:
    """An answer as one line of JSON (paths as text, bytes as base64, a float that is not
    finite as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``)."""
    return json.dumps(_finite(answer), ensure_ascii=False, default=_jsonable, allow_nan=False)
