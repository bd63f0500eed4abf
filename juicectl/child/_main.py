"""``python -m juicectl.child package.module:WorkerClass``: protect stdio, then import and serve.

The order is the point: stdio is protected before the worker's module is imported, so even
what that module prints or logs while it is imported cannot reach the protocol stream.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from juicectl._busy_poll import check_busy_poll
from juicectl.child._loader import load_worker
from juicectl.child._runtime import EXIT_INTERRUPTED, run
from juicectl.child._stdio import protect_stdio

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
    args = parser.parse_args(argv)
    if args.concurrency is not None and args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if args.busy_poll is not None:
        try:
            check_busy_poll(args.busy_poll)
        except ValueError as exc:
            parser.error(str(exc).replace("busy_poll", "--busy-poll", 1))
    try:
        worker = load_worker(args.worker)
    except ValueError as exc:
        parser.error(str(exc))
    if not callable(worker):
        parser.error(f"{args.worker} is not a class")
    run(worker, concurrency=args.concurrency, busy_poll=args.busy_poll)
    sys.exit(0)  # run() exits; this keeps the contract if it ever returns
