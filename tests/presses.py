"""Pressing Ctrl-C on another process once it is known to wait where the test says (helper).

CPython's SIGINT handler in C only sets a flag; ``KeyboardInterrupt`` is raised at the
interpreter's next check between bytecodes, or at once by a blocking call that the signal
interrupts. A signal that lands after the last check but before a blocking call such as
``time.sleep()`` or ``signal.pause()`` enters the kernel interrupts nothing: the process sleeps
on, the flag set, until the call ends. Told "now sleep" and pressed at once, a plain
``os.read(); time.sleep(600)`` script slept on in 6 presses of 100 here (none of 100 once
pressed in its sleep). So a test presses only once the main thread is blocked in the call it
means, as ``/proc/PID/wchan`` (the kernel function it waits in) shows.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.supervision.conftest import wait_for

#: The kernel function ``time.sleep()`` waits in (``hrtimer_nanosleep`` on Linux 5 and 6).
IN_SLEEP = "nanosleep"
#: The kernel function ``signal.pause()`` waits in (``__do_sys_pause``).
IN_PAUSE = "pause"
#: Where the kernel does not name the function (a sleeping process's ``wchan`` reads ``0``, as
#: a running one's always does): how long to let the process reach its wait instead (seconds).
SETTLE = 0.5


def _waits_in(pid: int) -> str | None:
    """The kernel function the main thread of ``pid`` sleeps in: ``"0"`` while it runs, or
    where the kernel hides the name; None once the process is gone."""
    try:
        where = Path(f"/proc/{pid}/wchan").read_text()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return None
    return where if state in ("S", "D") else "running"


def wait_until_blocked_in(pid: int, kernel_function: str, bound: float = 60.0) -> None:
    """Return once the main thread of ``pid`` waits in a kernel function whose name contains
    ``kernel_function`` (``IN_SLEEP``, ``IN_PAUSE``), or once the process is gone (the test
    then sees how it ended). Fails after ``bound`` seconds."""

    def hidden(where: str | None) -> bool:
        return where in ("", "0")  # asleep, but the kernel does not say where

    def there() -> bool:
        where = _waits_in(pid)
        return where is None or kernel_function in where or hidden(where)

    wait_for(there, bound, f"process {pid} waiting in {kernel_function}")
    if hidden(_waits_in(pid)):
        time.sleep(SETTLE)
