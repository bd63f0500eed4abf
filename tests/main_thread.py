"""A signal handled off the main thread, while the main thread waits in juicectl (test helper).

CPython runs a signal's Python handler on the main thread, between bytecodes. A wait blocked
in C sees a signal at once only if it interrupts that very system call; ``interrupted_in``
makes sure it does not: the main thread blocks the signal (``pthread_sigmask``) and a helper
thread, started before that, takes it. So the handler, which raises ``Interrupted`` as
Ctrl-C's raises ``KeyboardInterrupt``, runs only when the main thread next runs Python: at
once in a wait cut into slices (``juicectl._main_thread``), never in one that blocks whole.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

#: The signal used (not SIGINT: pytest's own Ctrl-C handling stays out of it).
SIGNAL = signal.SIGUSR1
#: Seconds after which the helper ends the wait itself (``release``) if the signal has not
#: been handled: the test then fails, instead of hanging.
BOUND = 10.0


class Interrupted(BaseException):
    """Raised by the handler, like ``KeyboardInterrupt`` (a ``BaseException``, so that code
    catching ``Exception`` lets it through, as it lets Ctrl-C through)."""


class Interruption:
    """What happened: whether the handler ran before ``release`` had to end the wait."""

    def __init__(self) -> None:
        self.released = False
        self.raised_before_release: bool | None = None


def _plain_name(code_name: str) -> str:
    """A function's own name, also as mutmut renames it (``xǁClassǁname__mutmut_orig``,
    ``x_name__mutmut_3``) when it runs these tests on mutants."""
    if "__mutmut_" not in code_name:
        return code_name
    name = code_name.split("__mutmut_")[0].rsplit("ǁ", 1)[-1]
    return name.removeprefix("x_")


def _inside(frame: FrameType | None, function: str) -> bool:
    while frame is not None:
        if _plain_name(frame.f_code.co_name) == function:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def interrupted_in(function: str, release: Callable[[], object]) -> Iterator[Interruption]:
    """Run the block on the main thread; once it has sat in ``function`` (a function's name)
    for a while, raise ``Interrupted`` in it from a signal handled off the main thread. Should
    that not happen within ``BOUND`` seconds, ``release()`` ends the wait instead (and the
    outcome says so). The block must raise ``Interrupted``."""
    assert threading.current_thread() is threading.main_thread()
    outcome = Interruption()
    main = threading.get_ident()  # the main thread: asserted above
    done = threading.Event()
    handled = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        handled.set()
        outcome.raised_before_release = not outcome.released
        raise Interrupted

    def interrupt() -> None:
        inside = 0
        while inside < 5 and not done.is_set():  # sat there for five looks in a row
            time.sleep(0.02)
            inside = inside + 1 if _inside(sys._current_frames().get(main), function) else 0
        if done.is_set():
            return
        signal.pthread_kill(threading.get_ident(), SIGNAL)  # handled here, run on main
        if not handled.wait(BOUND) and not done.is_set():
            outcome.released = True
            release()

    previous = signal.signal(SIGNAL, handler)
    helper = threading.Thread(target=interrupt, name="test-interrupt", daemon=True)
    helper.start()  # before the mask: it keeps the signal unblocked
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {SIGNAL})
    try:
        yield outcome
    finally:
        done.set()
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        helper.join(BOUND + 5)
        signal.signal(SIGNAL, previous)
