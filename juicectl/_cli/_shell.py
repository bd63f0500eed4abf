"""``juicectl shell -- CHILD...``: an interactive prompt that sends each line to the child."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from juicectl._cli._common import (
    Failure,
    Timeouts,
    UsageError,
    closing,
    connect,
    parse_request,
    send,
    start_controller,
    to_json,
)
from juicectl.controller import ProcessController
from juicectl.juice import Command

_HISTORY = "~/.juicectl_history"

# --- the shell ---------------------------------------------------------------------------

_SHELL_HELP = """\
COMMAND key=value ...   send a command; values with spaces go in quotes
:mode                   the controller's mode
:stats                  the controller's figures
:stop                   stop the child (the next command starts a new one)
:help                   this text
:quit                   leave (also :q, :exit, end of input)"""


def run_shell(words: list[str], commands: dict[str, type[Command]], timeouts: Timeouts) -> int:
    interactive = sys.stdin.isatty()
    failures = 0
    with closing(start_controller(words, timeouts)) as controller:
        connection = connect(controller, timeouts)
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
    timeouts: Timeouts,
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
    connection = connect(controller, timeouts)
    try:
        answer = send(connection, command, arguments, timeouts.answer)
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
