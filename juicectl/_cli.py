"""The ``juicectl`` command line: ``call``, ``shell`` and ``demo``.

``juicectl call -- python -m my_worker Echo value=hi`` starts the child under a controller,
sends one request, prints the answer as JSON and stops the child cleanly. ``juicectl shell --
CMD...`` does the same for each line typed. Commands the parent has no class for are sent as
ad-hoc commands: the ``key=value`` pairs go out as text fields and every field of the answer
comes back as text. ``--commands module:attr`` names ``Command`` classes to use instead, so
arguments are converted to their declared types and answers parsed with them.

Every error ends with a one-line message on stderr and a non-zero exit status (1 for a
failure, 2 for a bad command line); there is no traceback unless ``JUICECTL_DEBUG`` is set.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from types import ModuleType
from typing import Any, NoReturn, TextIO

import pykka
import structlog

from juicectl import __version__
from juicectl.connection import Connection
from juicectl.controller import ProcessController
from juicectl.exceptions import (
    ArgumentError,
    JuicectlError,
    ProcessUnavailable,
    RemoteJuiceError,
    RequestTimeout,
)
from juicectl.juice import Command, command_key, normalize_key, raw_command
from juicectl.policy import RestartPolicy

__all__ = ["main"]

PROG = "juicectl"
_KEY_VALUE = re.compile(r"[A-Za-z_][\w-]*=", re.ASCII)
_HISTORY = "~/.juicectl_history"


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
class _Timeouts:
    answer: float
    startup: float


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


# --- the command line --------------------------------------------------------------------


def _parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Talk to a juicectl worker from the shell, or run the demo.",
    )
    parser.add_argument("--version", action="version", version=f"juicectl {__version__}")
    commands = parser.add_subparsers(dest="action", metavar="{call,shell,demo}")
    commands.required = True

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--timeout",
            type=float,
            default=30.0,
            metavar="S",
            help="seconds to wait for each answer (default 30)",
        )
        sub.add_argument(
            "--startup-timeout",
            type=float,
            default=30.0,
            metavar="S",
            help="seconds to wait for the child to be ready (default 30)",
        )
        sub.add_argument(
            "--commands",
            action="append",
            default=[],
            metavar="MODULE[:ATTR]",
            help="Command classes to use for typed arguments and answers: a module, a class, "
            "or a list of classes (repeatable); other commands are sent as text",
        )
        sub.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=0,
            help="show the controller's log on stderr (-vv for debug)",
        )

    call = commands.add_parser(
        "call",
        help="send one command and print the answer as JSON",
        description="Start the child, send one command, print the answer as JSON, stop.",
        usage=f"{PROG} call [options] -- CHILD_COMMAND... COMMAND [key=value ...]",
        epilog="The command is the last word that is not key=value; the words before it are "
        f"the child's command line. Example: {PROG} call -- python -m juicectl.child "
        "my_pkg.worker:Worker Echo value=hi",
    )
    common(call)
    call.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    shell = commands.add_parser(
        "shell",
        help="an interactive prompt that sends commands to the child",
        description="Start the child and send each line typed (COMMAND key=value ...) to it. "
        "Lines starting with ':' are for the shell (:help).",
        usage=f"{PROG} shell [options] -- CHILD_COMMAND...",
    )
    common(shell)
    shell.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    demo = commands.add_parser(
        "demo",
        help="run the demo: supervision, a crash, the restart, and a clean stop",
        description="Supervise the demo indexer worker, kill it mid-way and watch the "
        "controller recover.",
    )
    demo.add_argument(
        "--documents", type=int, default=40, metavar="N", help="documents to index (default 40)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``juicectl`` command line; return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(args_list)
        if args.action == "demo":
            from juicectl._demo import run_demo

            if args.documents < 2:
                raise UsageError("--documents must be at least 2")
            return run_demo(documents=args.documents)
        _configure_logging(args.verbose)
        words = _strip_separator(args.words)
        commands = _load_commands(args.commands)
        if args.timeout <= 0 or args.startup_timeout <= 0:
            raise UsageError("--timeout and --startup-timeout must be > 0")
        limits = _Timeouts(answer=args.timeout, startup=args.startup_timeout)
        if args.action == "call":
            return _call(words, commands, limits)
        return _shell(words, commands, limits)
    except UsageError as error:
        _say(f"{PROG}: error: {error}")
        return 2
    except Failure as error:
        _say(f"{PROG}: {error}")
        return 1
    except KeyboardInterrupt:
        _say(f"{PROG}: interrupted")
        return 130
    except Exception as error:
        if os.environ.get("JUICECTL_DEBUG"):
            raise
        _say(f"{PROG}: internal error: {type(error).__name__}: {_one_line(error)} "
             "(set JUICECTL_DEBUG=1 for the traceback)")
        return 1


def _say(line: str, stream: TextIO | None = None) -> None:
    print(line, file=stream or sys.stderr, flush=True)


def _strip_separator(words: list[str]) -> list[str]:
    return words[1:] if words and words[0] == "--" else words


def _configure_logging(verbose: int) -> None:
    # A program, not the library: its log goes to stderr, so stdout carries only answers.
    if structlog.is_configured():
        return
    # Failures are reported by the command itself, in one line: the log only on request.
    level = {0: 40, 1: 20}.get(verbose, 10)  # ERROR, INFO, DEBUG
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


# --- commands by name --------------------------------------------------------------------


def _load_commands(specs: Iterable[str]) -> dict[str, type[Command]]:
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


def split_call_words(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """``CHILD... COMMAND key=value...`` -> (child argv, [COMMAND, key=value...]).

    The command is the last word that is not ``key=value``.
    """
    end = len(words)
    while end > 0 and _KEY_VALUE.match(words[end - 1]):
        end -= 1
    if end == 0:
        raise UsageError("no command given: expected CHILD_COMMAND... COMMAND [key=value ...]")
    if end == 1:
        raise UsageError("no child command given: expected CHILD_COMMAND... COMMAND")
    return list(words[: end - 1]), list(words[end - 1 :])


# --- running ---------------------------------------------------------------------------


def _start(argv: list[str], timeouts: _Timeouts) -> ProcessController:
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


def _connect(controller: ProcessController, timeouts: _Timeouts) -> Connection:
    try:
        connection: Connection = controller.get_process().get(timeout=timeouts.startup + 5)
    except pykka.Timeout:
        raise Failure(f"the child was not ready within {timeouts.startup:g} s") from None
    except ProcessUnavailable as error:
        raise Failure(_one_line(error)) from None
    return connection


def _send(
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
        raise Failure(f"{command.command_name}: {_one_line(error)}", ended=True) from None
    except JuicectlError as error:
        raise Failure(f"{command.command_name}: {_one_line(error)}") from None
    except Exception as error:
        # A declared error class of a --commands command.
        raise Failure(
            f"{command.command_name} failed: {type(error).__name__}: {_one_line(error)}"
        ) from None
    return answer


def _one_line(error: BaseException) -> str:
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


def _call(words: list[str], commands: dict[str, type[Command]], timeouts: _Timeouts) -> int:
    argv, request = split_call_words(words)
    command, arguments = parse_request(request, commands)
    with _closing(_start(argv, timeouts)) as controller:
        connection = _connect(controller, timeouts)
        answer = _send(connection, command, arguments, timeouts.answer)
    print(to_json(answer), flush=True)
    return 0


@contextlib.contextmanager
def _closing(controller: ProcessController) -> Iterator[ProcessController]:
    try:
        yield controller
    finally:
        controller.close()


# --- the shell ---------------------------------------------------------------------------

_SHELL_HELP = """\
COMMAND key=value ...   send a command; values with spaces go in quotes
:mode                   the controller's mode
:stats                  the controller's figures
:stop                   stop the child (the next command starts a new one)
:help                   this text
:quit                   leave (also :q, :exit, end of input)"""


def _shell(words: list[str], commands: dict[str, type[Command]], timeouts: _Timeouts) -> int:
    interactive = sys.stdin.isatty()
    failures = 0
    with _closing(_start(words, timeouts)) as controller:
        connection = _connect(controller, timeouts)
        if interactive:
            _setup_readline(commands)
            print(f"connected to {' '.join(words)} (pid {connection.pid}); :help for help")
        for line in _lines(interactive):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if text in (":quit", ":q", ":exit"):
                break
            try:
                _shell_line(text, controller, commands, timeouts)
            except (UsageError, Failure) as error:
                failures += 1
                print(f"error: {error}", flush=True)
    return 1 if failures else 0


def _shell_line(
    text: str,
    controller: ProcessController,
    commands: dict[str, type[Command]],
    timeouts: _Timeouts,
) -> None:
    if text.startswith(":"):
        if text == ":help":
            print(_SHELL_HELP)
        elif text == ":mode":
            print(controller.mode)
        elif text == ":stats":
            print(to_json(controller.stats()))
        elif text == ":stop":
            result = controller.stop_process().get(timeout=30)
            print(f"stopped: {result.how}")
        else:
            raise UsageError(f"unknown shell command {text!r} (:help lists them)")
        sys.stdout.flush()
        return
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise UsageError(str(error)) from None
    command, arguments = parse_request(words, commands)
    connection = _connect(controller, timeouts)
    try:
        answer = _send(connection, command, arguments, timeouts.answer)
    except Failure as failure:
        if failure.ended:
            # The child ends the conversation after UNHANDLED (as the reference peer does), or
            # is gone: wait until the controller has seen it go, so the next line gets a new
            # child instead of the closing connection.
            _wait_for_exit(controller, timeouts.answer)
            raise Failure(f"{failure}; the next command starts a new child") from None
        raise
    print(to_json(answer), flush=True)


def _wait_for_exit(controller: ProcessController, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while controller.mode == "ready" and time.monotonic() < deadline:
        time.sleep(0.02)


def _lines(interactive: bool) -> Iterator[str]:
    if not interactive:
        yield from sys.stdin
        return
    while True:
        try:
            yield input("juicectl> ")
        except EOFError:
            print()
            return
        except KeyboardInterrupt:
            print()  # a fresh prompt, as shells do


def _setup_readline(commands: dict[str, type[Command]]) -> None:
    try:
        import readline
    except ImportError:
        return
    history = Path(os.environ.get("JUICECTL_HISTORY", _HISTORY)).expanduser()
    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    readline.set_history_length(1000)
    import atexit

    atexit.register(_save_history, readline.write_history_file, history)
    names = sorted({command.command_name for command in commands.values()})
    words = [*names, ":help", ":mode", ":stats", ":stop", ":quit"]

    def complete(text: str, state: int) -> str | None:
        matches = [word for word in words if word.lower().startswith(text.lower())]
        return matches[state] if state < len(matches) else None

    readline.set_completer(complete)
    readline.parse_and_bind("tab: complete")


def _save_history(write: Callable[[Path], None], history: Path) -> None:
    with contextlib.suppress(OSError):
        write(history)
