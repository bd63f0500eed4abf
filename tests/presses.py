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

#: The kernel function ``time.sleep()`` waits in (``hrtimer_nanosleep`` on Linux 5 and 6).
IN_SLEEP = "nanosleep"
#: The kernel function ``signal.pause()`` waits in (``__do_sys_pause``).
IN_PAUSE = "pause"
#: Where the kernel does not name the function (``wchan`` reads ``0``): how long to let the
#: process reach its wait instead (seconds).
SETTLE = 0.5


def wait_until_blocked_in(pid: int, kernel_function: str, bound: float = 60.0) -> None:
    """Return once the main thread of ``pid`` waits in a kernel function whose name contains
    ``kernel_function`` (``IN_SLEEP``, ``IN_PAUSE``), or once the process is gone (the test
    then sees how it ended). Fails after ``bound`` seconds."""
    wchan = Path(f"/proc/{pid}/wchan")
    deadline = time.monotonic() + bound
    while True:
        try:
            where = wchan.read_text()
        except OSError:
            return
        if kernel_function in where:
            return
        if where in ("", "0"):  # this kernel hides it: a moment instead
            time.sleep(SETTLE)
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"process {pid} did not wait in {kernel_function} within {bound} s "
                f"(it waits in {where!r})"
            )
        time.sleep(0.001)
