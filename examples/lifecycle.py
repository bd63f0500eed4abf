"""The whole lifecycle, with the controller's own log lines: start, a call, a crash and the
recovery, and a clean stop.

    python examples/lifecycle.py

Each ``mode_changed`` line is one transition of the seed's table; ``child_terminated`` says
why a child ended; ``restart_scheduled`` shows the restart policy at work. Ctrl-C ends it
quietly (status 130), stopping the child.
"""

from __future__ import annotations

import logging
import os
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

from examples.commands import Echo
from juicectl import ProcessController, ProcessUnavailable, RestartPolicy

ROOT = Path(__file__).resolve().parent.parent

# Only the parts of the story worth reading: transitions, launches, exits, restarts.
SHOWN = {
    "mode_changed", "launched", "ready", "exited", "child_terminated", "restart_scheduled",
    "stop_step", "controller_closed",
}


def only_the_story(_logger: object, _name: str, event: dict[str, object]) -> dict[str, object]:
    if event.get("event") not in SHOWN:
        raise structlog.DropEvent
    return event


def main() -> int:
    # Examples may configure structlog; the library never does.
    structlog.configure(
        processors=[
            only_the_story,
            structlog.processors.TimeStamper(fmt="%H:%M:%S.%f"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    worker = [sys.executable, str(ROOT / "examples" / "echo_worker.py")]
    ctl = ProcessController.start(
        worker, name="lifecycle", restart=RestartPolicy(initial_delay=0.2)
    )
    try:
        print(f"-- created in mode {ctl.mode!r}; the first get_process() launches the child")
        conn = ctl.get_process().get(timeout=10)
        print("-- call:", conn.call(Echo, value="hello").get(timeout=5))

        print(f"-- crash: SIGKILL to child {conn.pid}")
        os.kill(conn.pid, signal.SIGKILL)
        try:
            conn.call(Echo, value="lost?").get(timeout=5)
        except ProcessUnavailable as error:
            print(f"-- the old connection fails transiently: {error}")
        deadline = time.monotonic() + 10
        while True:  # callers retry a transient failure
            try:
                conn = ctl.get_process().get(timeout=10)
                break
            except ProcessUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        answer = conn.call(Echo, value="again").get(timeout=5)
        print(f"-- recovered: child {conn.pid} answers {answer}")

        result = ctl.stop_process().get(timeout=15)
        print(f"-- stopped ({result.how}); mode is {ctl.mode!r}")
    finally:
        ctl.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
