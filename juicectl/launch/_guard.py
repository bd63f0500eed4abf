"""The parent-death guard: a child and its process group die with the parent, by construction.

Each child gets a guard: a POSIX shell (``/bin/sh``, dash on Debian, about 1 MiB) started just
before the child, which leads the process group the child then joins. The guard's stdin is the
read end of a pipe whose only write end this process holds. It ignores the signals of the stop
escalation (and says so on its stdout once it does: no signal it traps is sent to the group
before), then waits for end of file on that pipe, which comes only when the write end is
closed: by :meth:`ParentDeathGuard.release`, or by the kernel when this process dies, however
it dies (SIGKILL, a crash, the OOM killer). Then it sends SIGKILL to its whole process group:
the child, busy or not, and every grandchild still in the group, and itself.

Why this and not the alternatives (see ``docs/supervision.md`` for the figures):

* ``preexec_fn`` running ``prctl(PR_SET_PDEATHSIG)`` between fork and exec is Python code in a
  forked child of a threaded process, which Python documents as unsafe (a lock held by another
  thread at the fork is held forever in the child), and it forces ``fork()`` instead of
  ``vfork()``: 2.5 ms per launch from a small parent, 58 ms from a parent of 1 GiB.
* ``setpriv --pdeathsig KILL`` as an exec prefix is C, but it is Linux and util-linux only,
  leaves a window between the fork and its ``prctl`` in which the parent's death goes
  unnoticed, turns a missing program into an exit status of 127, and kills only the child:
  grandchildren are orphaned.
* The juicectl child runtime setting the signal itself covers ``python -m juicectl.child``
  workers only.

The guard is plain POSIX (Linux, macOS, the BSDs), costs one more small process per child and
about a millisecond per launch, and covers the grandchildren. Its remaining window: the child
joins the guard's group in C inside ``subprocess``, a few system calls after its fork. If the
parent dies in those microseconds *and* the guard runs its kill before the child joins, the
child finds a group whose only member is the dead guard and runs on unguarded (it still sees
end of file on its stdin, as any child of a dead parent does). A guard that has been reaped by
then makes the join fail, and the child exits before its exec.

A process forked from the parent without an exec (``multiprocessing``'s ``fork`` start method)
would inherit the write ends and keep the guards from firing; they are closed in such a child
(``os.register_at_fork``).
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import shutil
import signal
import subprocess
import threading

#: The shell that runs the guard.
GUARD_SHELL = "/bin/sh"

# The guard's program. Ignoring TERM keeps it through the escalation's SIGTERM to the group;
# HUP, INT and QUIT come from a terminal (or a user signalling the group) and change nothing.
# Until the traps are set those signals would kill it, so it says "armed" on its stdout once
# they are, and closes it. PIPE: a parent that dies before the guard says "armed" leaves that
# word a pipe nobody reads, and SIGPIPE would end the guard before it could end the group; with
# PIPE ignored the word fails quietly and the guard goes on to `read`, which sees the end of
# file at once. `read` returns non-zero at end of file only; a stray line is read and ignored.
_SCRIPT = (
    "trap '' HUP INT QUIT TERM PIPE; echo armed; exec >&-; "
    "while read -r line; do :; done; kill -s KILL 0"
)
# The same, for a guard that also removes a directory when the parent dies (``{rm}`` and
# ``{path}`` quoted). ``release()`` says "released" first, so that only the parent's death
# removes it: a released guard's directory may be in use again (a new ssh master in it).
_SCRIPT_REMOVING = (
    "trap '' HUP INT QUIT TERM PIPE; echo armed; exec >&-; "
    "while read -r line; do [ \"$line\" = released ] && kill -s KILL 0; done; "
    "{rm} -rf -- {path}; kill -s KILL 0"
)

#: The signals the guard ignores once armed.
TRAPPED_SIGNALS = frozenset(
    {signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGPIPE}
)

# Seconds to wait for a guard to be reaped once its group was killed (it is a shell blocked in
# `read`: it dies at once; the bound is there so that nothing can hang on it).
_REAP_TIMEOUT = 5.0

# Write ends of every guard's pipe in this process, so that a forked child can close them.
_write_ends: set[int] = set()
_write_ends_lock = threading.Lock()


def _close_write_ends_after_fork() -> None:
    # Runs in the child of os.fork(), where only the forking thread exists: no lock is taken
    # (another thread may have held it at the fork, and is gone).
    for fd in list(_write_ends):
        with contextlib.suppress(OSError):
            os.close(fd)
    _write_ends.clear()


os.register_at_fork(after_in_child=_close_write_ends_after_fork)


class ParentDeathGuard:
    """One child's guard process: the leader of the child's process group.

    Start it with :meth:`start`, launch the child with ``process_group=guard.pgid``, and call
    :meth:`release` once the child has exited (or failed to launch).
    """

    def __init__(
        self, popen: subprocess.Popen[bytes], write_end: int, *, removes: bool = False
    ) -> None:
        self._popen = popen
        self._write_end: int | None = write_end
        self._armed = False
        self._removes = removes

    @classmethod
    def start(
        cls, shell: str = GUARD_SHELL, *, remove_on_death: str | None = None
    ) -> ParentDeathGuard:
        """Start a guard, the leader of a new process group.

        ``remove_on_death``: a directory the guard also removes (``rm -rf``) when this
        process dies, before it ends its group, and not when it is released: what an owner
        killed outright cannot clean up itself (an ssh master's control socket and log).
        Ignored where there is no ``rm`` program.

        Raises:
            OSError: the pipe or the guard could not be created (``FileNotFoundError`` when
                ``shell`` does not exist).
        """
        script = _SCRIPT
        rm = shutil.which("rm", path=os.defpath) if remove_on_death is not None else None
        if remove_on_death is not None and rm is not None:
            script = _SCRIPT_REMOVING.format(rm=shlex.quote(rm),
                                             path=shlex.quote(remove_on_death))
        read_end, write_end = os.pipe()
        try:
            popen = subprocess.Popen(
                [shell, "-c", script],
                stdin=read_end,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd="/",  # holds no directory busy
                env={},
                close_fds=True,
                process_group=0,
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        with _write_ends_lock:
            _write_ends.add(write_end)
        return cls(popen, write_end, removes=script is not _SCRIPT)

    @property
    def pid(self) -> int:
        """The guard's process id."""
        return self._popen.pid

    @property
    def pgid(self) -> int:
        """The process group the guard leads and the child joins (the guard's pid)."""
        return self._popen.pid

    def alive(self) -> bool:
        """Whether the guard is still running."""
        return self._popen.poll() is None

    def wait_armed(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the guard to have set its traps (a shell takes
        about a millisecond to get there); True once it has. Before that, a SIGTERM to the
        group would kill the guard along with the child."""
        stdout = self._popen.stdout
        if self._armed or stdout is None:
            return self._armed
        ready, _, _ = select.select([stdout], [], [], timeout)
        if ready:
            self._armed = stdout.read(16).startswith(b"armed")
            stdout.close()
        return self._armed

    def release(self) -> int | None:
        """Close the pipe (the guard kills whatever is left of its group, itself included) and
        reap the guard. Idempotent. Returns the guard's exit status (None if it could not be
        reaped within a few seconds, which a shell blocked in ``read`` never needs)."""
        write_end, self._write_end = self._write_end, None
        if write_end is not None:
            with _write_ends_lock:
                _write_ends.discard(write_end)
            if self._removes:
                with contextlib.suppress(OSError):  # a guard already gone: nothing to tell
                    os.write(write_end, b"released\n")
            with contextlib.suppress(OSError):
                os.close(write_end)
        if self._popen.stdout is not None:
            self._popen.stdout.close()
        try:
            return self._popen.wait(timeout=_REAP_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None
