"""``python -m juicectl.child package.module:WorkerClass``: protect stdio, then import and serve.

The order is the point: stdio is protected before the worker's module is imported, so even
what that module prints or logs while it is imported cannot reach the protocol stream.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from juicectl._busy_poll import check_busy_poll
from juicectl.child._loader import load_worker
from juicectl.child._runtime import (
    EXIT_INTERRUPTED,
    MAX_CONCURRENCY,
    busy_poll_from_env,
    run,
)
from juicectl.child._stdio import protect_stdio

if TYPE_CHECKING:
    import argparse

__all__ = ["main"]

_USAGE = (
    "python -m juicectl.child package.module:WorkerClass [--concurrency N] [--busy-poll SECONDS]"
)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the worker named on the command line; exit 0 when the conversation ends.

    Exit status 2 for a bad command line (argparse's convention), 1 after a protocol error,
    130 after Ctrl-C (with no traceback, also while the worker's module is imported).
    """
    # First, before argparse (its --help prints to stdout) and before any import of user code.
    protect_stdio()
    try:
        _serve(argv)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)  # run() says why; this covers the loading before it


def _serve(argv: Sequence[str] | None) -> None:
    words = list(sys.argv[1:] if argv is None else argv)
    parsed = _plain_arguments(words)
    if parsed is None:
        parsed = _arguments(words)  # argparse: its help, its errors, every other spelling
    name, concurrency, busy_poll = parsed
    if busy_poll is None:
        try:
            busy_poll = busy_poll_from_env()  # read once: run() is given what it says
        except ValueError as exc:
            _parser().error(str(exc))
    worker = _load(name)
    if not isinstance(worker, type):
        # A function would be served as if it were the worker, and answer nothing.
        _parser().error(f"{name} is not a class")
    run(worker, concurrency=concurrency, busy_poll=busy_poll)
    sys.exit(0)  # run() exits; this keeps the contract if it ever returns


def _load(name: str) -> object:
    """The worker ``name`` names; exit 2 with one line when the command line names nothing
    (no such module, no such attribute, a relative module name). A module that raises as it
    is imported, even an ImportError of its own, raises on: status 1, with its traceback."""
    module_name, _, qualname = name.partition(":")
    if module_name.startswith("."):
        _parser().error(f"{name!r}: the module must be named in full, not relative")
    try:
        return load_worker(name)
    except ValueError as exc:
        _parser().error(str(exc))
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            _parser().error(f"{name!r}: no module named {missing!r}")
        raise
    except AttributeError:
        module = sys.modules.get(module_name)
        if module is None:
            raise
        found: object = module
        for part in qualname.split("."):
            if not hasattr(found, part):
                _parser().error(f"{name!r}: {module_name} has no {qualname!r}")
            found = getattr(found, part)
        raise  # raised while the module was imported


#: The options of the command line, and how the plain form of each value is read.
_OPTIONS = {"--concurrency": "concurrency", "--busy-poll": "busy_poll"}
_Arguments = tuple[str, "int | None", "float | None"]


def _plain_arguments(words: list[str]) -> _Arguments | None:
    """The usual command line, read without argparse: ``WORKER``, then each option at most
    once as ``--name VALUE``, with values that are valid as they are written. None for
    anything else (help, errors, abbreviations, ``--name=VALUE``...), which argparse reads.

    argparse and what it imports (``gettext``, ``shutil`` and its compressors, ``locale``)
    are a good part of a worker's start otherwise (``docs/performance.md``, "The worker's
    start"); what this accepts, argparse reads alike (``tests/child/test_main.py``).
    """
    if not words or words[0].startswith("-"):
        return None
    found: dict[str, str] = {}
    rest = words[1:]
    if len(rest) % 2:
        return None
    for option, value in zip(rest[::2], rest[1::2], strict=True):
        key = _OPTIONS.get(option)
        if key is None or key in found or value.startswith("-"):
            return None
        found[key] = value
    concurrency: int | None = None
    busy_poll: float | None = None
    if "concurrency" in found:
        text = found["concurrency"]
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_CONCURRENCY:
            return None
        concurrency = int(text)
    if "busy_poll" in found:
        try:
            busy_poll = check_busy_poll(float(found["busy_poll"]))
        except ValueError:
            return None
    return words[0], concurrency, busy_poll


def _parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m juicectl.child",
        usage=_USAGE,
        description="Serve a juicectl worker on stdin/stdout (stray output goes to stderr).",
    )
    parser.add_argument("worker", help="the worker class, as package.module:WorkerClass")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="run up to N handlers at once (default: the worker's own setting, 1)",
    )
    parser.add_argument(
        "--busy-poll",
        type=float,
        default=None,
        metavar="SECONDS",
        help="poll stdin for up to this long before sleeping on it, while that brings requests"
        " sooner (one-at-a-time workers; 0: never; default: the worker's own setting, 0.0001)",
    )
    return parser


def _arguments(words: list[str]) -> _Arguments:
    """The command line as argparse reads it; exit 2 with its message if it is wrong."""
    parser = _parser()
    args = parser.parse_args(words)
    if args.concurrency is not None and not 1 <= args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    if args.busy_poll is not None:
        try:
            check_busy_poll(args.busy_poll)
        except ValueError as exc:
            parser.error(str(exc).replace("busy_poll", "--busy-poll", 1))
    return args.worker, args.concurrency, args.busy_poll
