"""Ctrl-C in ``call`` and ``shell``: stop the child, kill it on a second press, never hang.

The child runs in a session of its own, so the terminal's SIGINT reaches only this program,
which decides. A press interrupts only a *wait* (for the child to be ready, for an answer, for
the shell's next line): there the handler raises ``KeyboardInterrupt`` at once. Anywhere else
the press is remembered and raised when the next wait begins, so it never lands in the middle
of a request being written or of the controller's bookkeeping. The message a press prints is
printed by the handler itself, at once, on a line of its own.

What a press does is one table, keyed by the program's state:

==========  =============================================  ==========  =================
state       what the program is doing                      next state  action
==========  =============================================  ==========  =================
working     ``call``, the shell's start, a shell reading   stopping    say "stopping",
            a pipe: starting, sending, waiting                         interrupt the wait
shell       the shell's prompt on a terminal or one of     shell       interrupt the wait
            its commands
closing     closing the controller (a clean stop)          stopping    say "stopping"
stopping    the stop after a press                         killed      kill the child
killed      a stop whose child was killed                  killed      exit now
==========  =============================================  ==========  =================

The program moves between ``working``, ``shell`` and ``closing`` itself (``shell()``,
``closing()``); a press moves it on to ``stopping`` and ``killed``. The shell on a terminal
turns an interrupted wait into "cancelled" and shows the next prompt; ``call``, and a shell
reading a pipe (no one is at a prompt there), turn it into a stop.
To kill the child is to SIGKILL the process group of every child of this program (each child
runs in the group of its parent-death guard, see ``juicectl.launch``; never this program's own
group); once the child is dead the stop finishes at once, and a last bound exits anyway should
it not.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["EXIT_INTERRUPTED", "Interrupts"]

EXIT_INTERRUPTED = 130
"""The exit status after Ctrl-C (128 + SIGINT), as shells report it."""

KILLED_EXIT_BOUND = 3.0
"""Seconds the stop may take once the child was killed, before the program exits anyway."""


class State(enum.Enum):
    """What the program is doing when Ctrl-C comes (see the module's table)."""

    WORKING = "working"
    SHELL = "shell"
    CLOSING = "closing"
    STOPPING = "stopping"
    KILLED = "killed"


class Action(enum.Enum):
    """What a press does."""

    STOP = "say stopping, interrupt the wait"
    CANCEL = "interrupt the wait"
    SAY_STOPPING = "say stopping"
    KILL = "kill the child"
    EXIT = "exit now"


ON_PRESS: dict[State, tuple[State, Action]] = {
    State.WORKING: (State.STOPPING, Action.STOP),
    State.SHELL: (State.SHELL, Action.CANCEL),
    State.CLOSING: (State.STOPPING, Action.SAY_STOPPING),
    State.STOPPING: (State.KILLED, Action.KILL),
    State.KILLED: (State.KILLED, Action.EXIT),
}

STOPPING_MESSAGE = "juicectl: interrupted: stopping the child (press Ctrl-C again to kill it)"
KILLING_MESSAGE = "juicectl: killing the child"


def child_pids() -> list[int]:
    """The pids whose parent is this process (Linux: read from /proc; elsewhere none)."""
    me = os.getpid()
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 2 and int(fields[1]) == me:
                pids.append(int(entry.name))
    return pids


def kill_child_groups(
    known: Callable[[], int | None], signum: signal.Signals = signal.SIGKILL
) -> None:
    """Send ``signum`` (SIGKILL) to the process group of every child of this program (and of
    ``known()``'s pid)."""
    pids = set(child_pids())
    pid = known()
    if pid is not None:
        pids.add(pid)
    own_group = os.getpgrp()
    for pid in pids:
        with contextlib.suppress(OSError):
            group = os.getpgid(pid)
            if group != own_group:
                os.killpg(group, signum)
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


class Interrupts:
    """The SIGINT handler of ``call`` and ``shell`` and the state it acts on.

    Use ``with Interrupts.installed() as interrupts:``, and wrap every wait in
    ``with interrupts.wait():``.
    """

    def __init__(self, stderr: Any = None) -> None:
        self.state = State.WORKING
        self.presses = 0
        self._stderr = stderr
        self._waiting = False
        self._pending = False
        self.known_pid: Callable[[], int | None] = lambda: None
        """The child's pid if the program knows it (a fallback where /proc is missing)."""

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[Interrupts]:
        """Handle SIGINT with a new ``Interrupts`` until the block ends."""
        interrupts = cls()
        previous = signal.signal(signal.SIGINT, interrupts.on_sigint)
        try:
            yield interrupts
        finally:
            signal.signal(signal.SIGINT, previous)

    @property
    def interrupted(self) -> bool:
        """Whether Ctrl-C was pressed to stop the program (not just to cancel a command)."""
        return self.state in (State.STOPPING, State.KILLED)

    @contextlib.contextmanager
    def wait(self) -> Iterator[None]:
        """A wait that Ctrl-C interrupts with ``KeyboardInterrupt`` (raised at once if a press
        came since the last wait)."""
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False

    @contextlib.contextmanager
    def prompt(self) -> Iterator[None]:
        """The shell's prompt on a terminal: a press there interrupts ``input()``, for a fresh
        prompt. A press remembered from just before ends here: it came after the last command
        was done, and cancels nothing."""
        self._pending = False
        with self.wait():
            yield

    @contextlib.contextmanager
    def shell(self) -> Iterator[None]:
        """The shell's loop on a terminal: a press cancels the command or the prompt, not the
        program."""
        if self.state is State.WORKING:
            self.state = State.SHELL
        try:
            yield
        finally:
            if self.state is State.SHELL:
                self.state = State.WORKING

    def closing(self) -> None:
        """The program now closes the controller: a press says so, the next one kills."""
        self._pending = False
        if self.state in (State.WORKING, State.SHELL):
            self.state = State.CLOSING

    def on_sigint(self, signum: int, frame: FrameType | None) -> None:
        """The SIGINT handler: look the press up in ``ON_PRESS`` and act."""
        self.presses += 1
        self.state, action = ON_PRESS[self.state]
        if action is Action.STOP:
            self._say(STOPPING_MESSAGE)
            self._interrupt()
        elif action is Action.CANCEL:
            self._interrupt()
        elif action is Action.SAY_STOPPING:
            self._say(STOPPING_MESSAGE)
        elif action is Action.KILL:
            self._say(KILLING_MESSAGE)
            kill_child_groups(self.known_pid)
            bound = threading.Timer(KILLED_EXIT_BOUND, self._exit_now)
            bound.daemon = True
            bound.start()
        else:
            self._exit_now()

    def _interrupt(self) -> None:
        if self._waiting:
            self._waiting = False
            raise KeyboardInterrupt
        self._pending = True

    def _say(self, line: str) -> None:
        stream = self._stderr or sys.stderr
        # The terminal echoed ^C where the cursor was: start a line of our own.
        start = "\n" if _is_terminal(stream) else ""
        text = f"{start}{line}\n"
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        if fd is None:
            stream.write(text)
            stream.flush()
            return
        # One system call, past the stream's buffer: this runs in a signal handler, which may
        # interrupt this same thread inside a write to that buffer (a reentrant write raises),
        # and a log line from another thread cannot glue itself to a line written whole.
        with contextlib.suppress(OSError):
            os.write(fd, text.encode("utf-8", "replace"))

    @staticmethod
    def _exit_now() -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
