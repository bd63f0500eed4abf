"""``juicectl shell -- CHILD...``: an interactive prompt that sends each line to the child."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from juicectl._cli._common import (
    Failure,
    OutputError,
    Session,
    Timeouts,
    UsageError,
    parse_request,
    to_json,
    write_line,
)
from juicectl._cli._interrupts import EXIT_INTERRUPTED, Interrupts
from juicectl.juice import Command

_HISTORY = "~/.juicectl_history"

# --- the shell ---------------------------------------------------------------------------

_SHELL_HELP = """\
COMMAND key=value ...   send a command; values with spaces go in quotes
:mode                   the controller's mode
:stats                  the controller's figures
:stop                   stop the child (the next command starts a new one)
:help                   this text
:quit                   leave (also :q, :exit, end of input)
Ctrl-C                  stop waiting for the command (at the prompt: a fresh line)"""


def run_shell(
    words: list[str],
    commands: dict[str, type[Command]],
    timeouts: Timeouts,
    interrupts: Interrupts,
) -> int:
    interactive = sys.stdin.isatty()
    failures = 0
    session = Session(words, timeouts, interrupts)
    try:
        connection = session.connect()
        if interactive:
            _setup_readline(commands)
            write_line(f"connected to {' '.join(words)} (pid {connection.pid}); :help for help")
        # On a terminal Ctrl-C cancels a command; reading a pipe it stops, as in call.
        cancelling = interrupts.shell() if interactive else contextlib.nullcontext()
        with cancelling:
            for line in _lines(interactive, interrupts):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                if text in (":quit", ":q", ":exit"):
                    break
                try:
                    _shell_line(text, session, commands)
                except (UsageError, Failure) as error:
                    failures += 1
                    _complain(f"error: {error}")
                except KeyboardInterrupt:
                    if interrupts.interrupted:
                        raise
                    failures += 1
                    _complain(f"{_fresh_line()}cancelled: {_CANCELLED}")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED  # a stop, not a cancel: the handler has said so
    finally:
        session.close()
    if interrupts.interrupted:
        return EXIT_INTERRUPTED
    return 1 if failures else 0


_CANCELLED = ("stopped waiting; a request already sent still runs in the child and its "
              "answer is dropped (:stop stops the child)")


def _fresh_line() -> str:
    # On a terminal the ^C was echoed where the cursor was.
    return "\n" if sys.stderr.isatty() else ""


def _complain(line: str) -> None:
    # Errors go to stderr, as call's do: stdout carries answers only, for whoever reads them.
    print(line, file=sys.stderr, flush=True)


def _shell_line(text: str, session: Session, commands: dict[str, type[Command]]) -> None:
    controller = session.controller
    if text.startswith(":"):
        if text == ":help":
            write_line(_SHELL_HELP)
        elif text == ":mode":
            write_line(controller.mode)
        elif text == ":stats":
            write_line(to_json(controller.stats()))
        elif text == ":stop":
            with session.interrupts.wait():
                result = controller.stop_process().get(timeout=30)
            write_line(f"stopped: {result.how}")
        else:
            raise UsageError(f"unknown shell command {text!r} (:help lists them)")
        return
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise UsageError(str(error)) from None
    command, arguments = parse_request(words, commands)
    connection = session.connect()
    try:
        answer = session.send(connection, command, arguments)
    except Failure as failure:
        if failure.ended:
            # The child ended the conversation or is gone: wait until the controller has seen
            # it go, so the next line gets a new child instead of the closing connection.
            session.wait_for_exit()
            raise Failure(f"{failure}; the next command starts a new child") from None
        raise
    write_line(to_json(answer))


def _lines(interactive: bool, interrupts: Interrupts) -> Iterator[str]:
    if not interactive:
        while True:
            with interrupts.wait():  # Ctrl-C here stops the shell
                line = sys.stdin.readline()
            if not line:
                return  # end of input
            yield line
    while True:
        try:
            with interrupts.prompt():
                line = input("juicectl> ")
        except EOFError:
            write_line()
            return
        except KeyboardInterrupt:
            write_line()  # a fresh prompt, as shells do
            continue
        except OSError as error:
            raise OutputError(error) from None  # input() writes its prompt to stdout
        yield line


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
