"""A program that forgets to stop its actors must still exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    from controller_harness import Harness

    h = Harness()
    h.get()
    h.created()
    assert h.sync() == "ready"
    print("leaving", flush=True)
    """
)


def test_the_interpreter_exits_with_actors_still_running() -> None:
    # Python joins non-daemon threads before it runs atexit handlers: a non-daemon controller
    # or hook actor would hang here forever, and the handle's exit-time close would never run.
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(here=str(HERE))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "leaving" in done.stdout
