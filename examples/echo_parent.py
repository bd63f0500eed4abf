"""Start the echo worker under a ProcessController and talk to it.

    python examples/echo_parent.py

Shows a plain call, the original's ``Command(...).do(connection)`` style, a declared error
arriving as its exception class, concurrent calls to a worker served with ``--concurrency``,
and a clean stop. Ctrl-C ends it quietly (status 130), stopping the child.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

# Ctrl-C ends the example quietly with status 130, even while the imports below run; like any
# exit it goes through the `finally` and `with` blocks, which stop the children.
signal.signal(signal.SIGINT, lambda _signum, _frame: sys.exit(130))

# Run from a checkout, whether juicectl is installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from examples.commands import Echo, Fail, Sleep
from juicectl import ProcessController

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    # Examples may configure structlog; the library never does.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # stdout carries results
    )
    ctl = ProcessController.start(
        [
            sys.executable,
            "-m",
            "juicectl.child",
            "examples.echo_worker:EchoWorker",
            "--concurrency",
            "4",
        ],
        name="echo",
        cwd=str(ROOT),  # so that the child finds the examples package
    )
    try:
        conn = ctl.get_process().get(timeout=10)  # launches the child, waits until it answers
        print("mode:", ctl.mode)
        print("call:", conn.call(Echo, value="hello\r\nworld ✓").get(timeout=5))
        print("do():", Echo(value="the seed's style").do(conn).get(timeout=5))

        try:
            conn.call(Fail, message="on purpose").get(timeout=5)
        except ValueError as exc:  # Fail declares ValueError as BAD_VALUE
            print("declared error:", type(exc).__name__, exc)
        print("still serving:", conn.call(Echo, value="yes").get(timeout=5))

        started = time.monotonic()
        futures = [conn.call(Sleep, seconds=0.3) for _ in range(4)]
        for future in futures:
            future.get(timeout=5)
        print(f"4 x Sleep(0.3) with --concurrency 4 took {time.monotonic() - started:.2f} s")
    finally:
        result = ctl.close()
        print("stopped:", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
