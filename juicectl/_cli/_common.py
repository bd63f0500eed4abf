"""What the ``call`` and ``shell`` programs share: errors, commands by name, running a child."""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from types import ModuleType
from typing import Any

import pykka

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
from juicectl.policy import RestartPolicy


class UsageError(Exception):
    """A bad command line: exit status 2."""


class Failure(Exception):
    """A failure to report in one line: exit status 1.

    ``ended`` says the child's conversation is over (it answered ``UNHANDLED`` or went away).
    """

    def __init__(self, message: str, *, ended: bool = False) -> None:
        super().__init__(message)
        self.ended = ended


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
        except (ImportError, AttributeError, ValueError) as error:
            raise UsageError(f"--commands {spec}: {error}") from None
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
            if value.__module__.startswith("juicectl."):
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
            raise UsageError(f"expected key=value, got {pair!r}")
        arguments[key] = text
    if command is None:
        return raw_command(name), arguments
    types = {normalize_key(field): argument for field, argument in command.arguments}
    typed: dict[str, Any] = {}
    for key, text in arguments.items():
        argument = types.get(normalize_key(key))
        if argument is None:
            known = ", ".join(field for field, _ in command.arguments) or "none"
            raise UsageError(f"{command.command_name} has no argument {key!r} (it takes: {known})")
        try:
            typed[key] = argument.from_string(text)
        except (ArgumentError, ValueError, TypeError) as error:
            raise UsageError(f"{command.command_name} {key}={text!r}: {error}") from None
    return command, typed


# --- running ---------------------------------------------------------------------------


def start_controller(argv: list[str], timeouts: Timeouts) -> ProcessController:
    if not argv:
        raise UsageError("no child command given (put it after --)")
    return ProcessController.start(
        argv,
        name="cli",
        restart=RestartPolicy(mode="temporary"),
        startup_timeout=timeouts.startup,
        stop_timeout=5.0,
        kill_timeout=2.0,
    )


def connect(controller: ProcessController, timeouts: Timeouts) -> Connection:
    try:
        connection: Connection = controller.get_process().get(timeout=timeouts.startup + 5)
    except pykka.Timeout:
        raise Failure(f"the child was not ready within {timeouts.startup:g} s") from None
    except (ProcessUnavailable, ControllerClosed) as error:
        raise Failure(one_line(error)) from None
    return connection


def send(
    connection: Connection, command: type[Command], arguments: dict[str, Any], timeout: float
) -> dict[str, Any]:
    try:
        future = connection.call_with(command, arguments, timeout=timeout)
        answer: dict[str, Any] = future.get(timeout=timeout + 5)
    except pykka.Timeout:
        raise Failure(f"{command.command_name}: no answer within {timeout:g} s") from None
    except ArgumentError as error:
        raise UsageError(str(error)) from None
    except RequestTimeout as error:
        raise Failure(str(error)) from None
    except RemoteJuiceError as error:
        text = f"{command.command_name} failed: {error.code}: {' '.join(error.description.split())}"
        if error.code == "UNHANDLED":
            text += " (an unknown command, or an error the worker does not declare)"
        raise Failure(text, ended=error.code == "UNHANDLED") from None
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


def to_json(answer: Any) -> str:
    """An answer as one line of JSON (paths as text, bytes as base64)."""
    return json.dumps(answer, ensure_ascii=False, default=_jsonable)


@contextlib.contextmanager
def closing(controller: ProcessController) -> Iterator[ProcessController]:
    try:
        yield controller
    finally:
        controller.close()
