"""Spawning an invocation: the child's pipes, its process group, its guard.

Everything between fork and exec is done in C by ``subprocess`` (the pipes, the working
directory, joining the process group): no Python code runs in the forked child, so nothing in
it can deadlock on a lock another thread of the parent held at the fork, and ``subprocess`` can
use ``vfork()``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading

from juicectl._log import get_logger
from juicectl.launch._guard import GUARD_SHELL, TRAPPED_SIGNALS, ParentDeathGuard
from juicectl.launch._invocation import Invocation
from juicectl.launch._local import launch_failure

log = get_logger(__name__)

# Seconds to wait, at most, for a guard to have set its traps before a signal it traps goes
# to the group (it takes a shell about a millisecond, long done by the escalation's SIGTERM).
_ARMED_TIMEOUT = 2.0

# Guard shells found missing, warned about once each.
_missing_shells: set[str] = set()
_missing_shells_lock = threading.Lock()


class SpawnedChild:
    """A launched child: its ``Popen`` (pipes, pid, exit status), its process group, its guard.

    The child leads no group of its own: it is a member of its guard's group (``pgid``), with
    every grandchild that stays in it. Without a guard (no shell to run one) it leads its own
    group, as before.
    """

    def __init__(
        self, popen: subprocess.Popen[bytes], guard: ParentDeathGuard | None
    ) -> None:
        self.popen = popen
        """The child's ``Popen``: ``stdin``, ``stdout`` and ``stderr`` are unbuffered pipes."""
        self.guard = guard
        """The child's parent-death guard, or None if none could be started."""
        self._released = False
        # A handle on the child itself (Linux): a signal sent through it reaches the child or
        # nothing, even once another thread has reaped it and its pid is reused. Opened here,
        # before anything can have reaped it.
        self._pidfd = _open_pidfd(popen.pid)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.popen.pid

    @property
    def pgid(self) -> int:
        """The child's process group: its guard's pid, or its own without a guard."""
        return self.guard.pgid if self.guard is not None else self.popen.pid

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the child's process group, and to the child itself if it has
        left that group (``setsid()``, ``setpgid()``: the group's signal would miss it) or the
        group is out of reach (a member belongs to another user). A group that is gone is no
        error, and nothing is sent after :meth:`release`."""
        if self._released:
            return
        if self.guard is not None and signum in TRAPPED_SIGNALS:
            # Never before the guard ignores it: the group would lose its guard.
            self.guard.wait_armed(_ARMED_TIMEOUT)
        reached = True
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            reached = False
        if not reached or self._left_group():
            self._signal_child(signum)

    def _left_group(self) -> bool:
        """Whether the child, not yet reaped, is in a process group other than ``pgid``."""
        try:
            return os.getpgid(self.popen.pid) != self.pgid
        except OSError:
            return False  # reaped (or never was): nothing to reach

    def _signal_child(self, signum: int) -> None:
        # Through the pidfd where there is one: a pid that another thread has just reaped may
        # already name an unrelated process. Without one, Popen's own check of its exit.
        with contextlib.suppress(OSError):
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signum)
            else:
                self.popen.send_signal(signum)

    def release(self) -> None:
        """After the child has exited: kill what is left of its group and reap the guard.

        Idempotent, and the group is never signalled after this: once the guard is reaped,
        its pid (the group's id) may be reused by an unrelated process.
        """
        if self._released:
            return
        self.signal_group(signal.SIGKILL)
        self._released = True
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self.guard is not None:
            self.guard.release()


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (close-on-exec), or None where the system has none."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None or not hasattr(signal, "pidfd_send_signal"):
        return None
    try:
        return int(pidfd_open(pid))
    except OSError:
        return None  # a kernel before 5.3, or a sandbox that refuses it


def spawn(invocation: Invocation, *, guard_shell: str = GUARD_SHELL) -> SpawnedChild:
    """Start ``invocation`` with pipes on its stdin, stdout and stderr, in the process group of
    a new parent-death guard (see :mod:`juicectl.launch._guard`).

    If ``guard_shell`` does not exist the child is started unguarded, leading a group of its
    own, and a warning (``parent_death_guard_unavailable``) is logged once per shell.

    Raises:
        ProcessLaunchError: the child (or its guard) could not be started, whatever the
            exception was; it names the user's command and the working directory.
    """
    guard: ParentDeathGuard | None
    try:
        guard = ParentDeathGuard.start(guard_shell)
    except FileNotFoundError:
        guard = None
        with _missing_shells_lock:
            first = guard_shell not in _missing_shells
            _missing_shells.add(guard_shell)
        if first:
            log.warning(
                "parent_death_guard_unavailable",
                shell=guard_shell,
                detail="children are launched without a guard: a child outlives a parent "
                "that is killed, unless it exits at the end of its input",
            )
    except Exception as error:
        raise launch_failure(invocation, error) from error
    try:
        popen = subprocess.Popen(
            list(invocation.argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(invocation.env) if invocation.env is not None else None,
            cwd=invocation.cwd,
            close_fds=True,
            bufsize=0,
            process_group=guard.pgid if guard is not None else 0,
        )
    except Exception as error:
        failure = launch_failure(invocation, error)
        if guard is not None and not guard.alive():
            failure = launch_failure(
                invocation,
                OSError(f"its parent-death guard (pid {guard.pid}) ended before it started"),
            )
        if guard is not None:
            guard.release()
        raise failure from error
    return SpawnedChild(popen, guard)
