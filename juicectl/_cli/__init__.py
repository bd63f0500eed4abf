"""The ``juicectl`` command line: ``call``, ``shell`` and ``demo``.

``juicectl call -- python -m my_worker Echo value=hi`` starts the child under a controller,
sends one request, prints the answer as JSON and stops the child cleanly. ``juicectl shell --
CMD...`` does the same for each line typed. Commands the parent has no class for are sent as
ad-hoc commands: the ``key=value`` pairs go out as text fields and every field of the answer
comes back as text. ``--commands module:attr`` names ``Command`` classes to use instead, so
arguments are converted to their declared types and answers parsed with them.

Every error ends with a one-line message on stderr and a non-zero exit status (1 for a
failure, 2 for a bad command line, 130 after Ctrl-C; 141, and no message, when stdout's reader
has gone); there is no traceback unless ``JUICECTL_DEBUG`` is set. Ctrl-C stops the child (a
second press kills it) and, in the shell on a terminal, cancels the command being waited
for: see ``_interrupts``.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import sys
from collections.abc import Sequence
from typing import NoReturn, TextIO

import structlog

from juicectl import __version__
from juicectl._cli._call import run_call, split_call_words
from juicectl._cli._common import (
    Failure,
    OutputError,
    Timeouts,
    UsageError,
    load_commands,
    one_line,
    parse_request,
    to_json,
)
from juicectl._cli._interrupts import EXIT_INTERRUPTED, Interrupts
from juicectl._cli._shell import run_shell

__all__ = ["UsageError", "main", "parse_request", "split_call_words", "to_json"]

PROG = "juicectl"

EXIT_BROKEN_PIPE = 141
"""The exit status when stdout's reader went away (128 + SIGPIPE, as shells report it)."""

MAX_SECONDS = 86400.0
"""The longest ``--timeout`` or ``--startup-timeout``: one day (a timer cannot wait forever)."""

MAX_DOCUMENTS = 10_000
"""The most documents ``demo --documents`` indexes (about seven minutes of work)."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _seconds(text: str) -> float:
    """A ``--timeout`` value: seconds above 0, one day at most (nan and inf are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        raise argparse.ArgumentTypeError(
            f"must be above 0 and at most {MAX_SECONDS:g} seconds (one day), not {text!r}"
        )
    return value


def _documents(text: str) -> int:
    """A ``--documents`` value: from 2 to ``MAX_DOCUMENTS``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 2 <= value <= MAX_DOCUMENTS:
        raise argparse.ArgumentTypeError(f"must be from 2 to {MAX_DOCUMENTS}, not {text}")
    return value


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
            type=_seconds,
            default=30.0,
            metavar="S",
            help="seconds to wait for each answer (default 30, at most one day)",
        )
        sub.add_argument(
            "--startup-timeout",
            type=_seconds,
            default=30.0,
            metavar="S",
            help="seconds to wait for the child to be ready (default 30, at most one day)",
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
        help="run the demo: supervision, a crash, the restart, a clean stop; then a pool",
        description="Supervise the demo indexer worker, kill it mid-way and watch the "
        "controller recover; then the same with a pool of two workers.",
    )
    demo.add_argument(
        "--documents",
        type=_documents,
        default=40,
        metavar="N",
        help=f"documents to index (default 40; from 2 to {MAX_DOCUMENTS})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``juicectl`` command line; return the exit status."""
    try:
        args = _parse(list(sys.argv[1:] if argv is None else argv))
        if args.action == "demo":
            from juicectl._cli._demo import run_demo

            return run_demo(documents=args.documents)
        _configure_logging(args.verbose)
        if sys.stdout is None:
            # Started with stdout closed (`>&-`): print() would write the answer nowhere.
            raise OutputError(OSError(errno.EBADF, "stdout is closed"))
        if sys.stdin is None:
            # Started with stdin closed (`<&-`): no input, as from /dev/null. Left open: it is
            # the process's stdin from now on.
            sys.stdin = open(os.devnull)  # noqa: SIM115
        words = _strip_separator(args.words)
        commands = load_commands(args.commands)
        limits = Timeouts(answer=args.timeout, startup=args.startup_timeout)
        with Interrupts.installed() as interrupts:
            if args.action == "call":
                return run_call(words, commands, limits, interrupts)
            return run_shell(words, commands, limits, interrupts)
    except UsageError as error:
        _say(f"{PROG}: error: {error}")
        return 2
    except Failure as error:
        _say(f"{PROG}: {error}")
        return 1
    except KeyboardInterrupt:
        # Only outside call and shell (their own handler says what it does, at once).
        _say(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED
    except (OutputError, BrokenPipeError) as error:
        # The child is stopped by now (call and shell close their session on the way out).
        _discard_stdout()
        if isinstance(error, BrokenPipeError) or error.broken:
            return EXIT_BROKEN_PIPE  # nobody reads on: nothing to say (as `yes | head` says)
        _say(f"{PROG}: cannot write to stdout: {error}")
        return 1
    except Exception as error:
        if os.environ.get("JUICECTL_DEBUG"):
            raise
        _say(f"{PROG}: internal error: {type(error).__name__}: {one_line(error)} "
             "(set JUICECTL_DEBUG=1 for the traceback)")
        return 1


def _parse(args_list: list[str]) -> argparse.Namespace:
    args, extras = _parser().parse_known_args(args_list)
    if extras:
        # Left over by the subcommand's parser: its --help is the one that lists its options.
        raise UsageError(
            f"unrecognized arguments: {' '.join(extras)}; if they are the child's, put the "
            f"child's command after -- (see {PROG} {args.action} --help)"
        )
    return args


def _say(line: str, stream: TextIO | None = None) -> None:
    print(line, file=stream or sys.stderr, flush=True)


def _discard_stdout() -> None:
    # What stdout still buffers would fail again at exit, with Python's "Exception ignored"
    # message: let it go to /dev/null instead.
    if sys.stdout is None:
        return  # closed from the start: nothing buffered
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


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
        # WriteLogger writes each line, newline included, in one call.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
    )


