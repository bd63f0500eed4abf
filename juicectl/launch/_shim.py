"""The remote shim: runs a worker on the far side of a launcher and ends it when the link ends.

This module is sent whole through the launcher (``python3 -I -S -c '<this source>' ...``, the
way execnet sends its bootstrap), so the remote host needs Python 3.7 or newer and the worker,
nothing else. It imports the standard library only, and nothing of juicectl.

What it does, and why:

* **It reads nothing.** The worker inherits the shim's stdin, stdout and stderr, so the bytes
  of the protocol go straight between the transport (sshd, ``docker exec``, ...) and the
  worker; the shim only watches the descriptors with ``poll()`` for a hangup.
* **The worker leads a process group of its own**, so that one signal reaches it and every
  grandchild that stays in its group (a worker that moves to another group still gets each
  signal itself).
* **It leaves its launcher's process group**, so that a signal to that group (a local
  parent-death guard's SIGKILL) does not end it before it can end the worker's.
* **It is a subreaper** (Linux ``PR_SET_CHILD_SUBREAPER``): a grandchild that leaves the group
  (a daemon that calls ``setsid()``) and whose parent exits is re-parented to the shim, not
  to init, and the shim ends it too.
* **It ends the worker's group when the link ends:** its stdin hangs up (the transport
  closed it: the controller closed the worker's input, or the connection dropped), its
  stdout loses its reader, its parent dies (``PR_SET_PDEATHSIG``: sshd's session process
  went away), or it gets SIGTERM, SIGHUP or SIGINT. On a hangup of stdin the worker saw end
  of input too, and gets ``grace`` seconds to exit by itself; in every other case it gets
  SIGTERM at once. Then, ``grace`` seconds after SIGTERM, SIGKILL.
* **The worker dies with it:** the worker's parent-death signal is SIGKILL, so a shim killed
  outright (which can end nothing itself) still takes the worker along; the worker's own
  children are then left to the next subreaper, or init.
* **It passes the worker's exit back:** once the worker has exited, what is left of its group
  and every re-parented descendant get SIGKILL and are reaped, then the shim exits with the
  worker's exit status, or with 128 + the signal that ended it, after a line on stderr that
  says so (:data:`SIGNAL_LINE`), which the launcher reads back.
* It fails with status 127 and a line on stderr (``juicectl-shim: cannot run ...``) when the
  worker cannot be started (no such program, a bad working directory).

Usage: ``shim [-g GRACE] [-C DIR] [-i] [-E NAME=VALUE]... -- PROGRAM [ARG]...``; ``-i``
starts the worker with an empty environment plus the ``-E`` variables, otherwise they are
added to the shim's own environment.
"""

from __future__ import annotations

import os
import select
import sys
import time

TYPE_CHECKING = False  # `typing` is not imported at run time: the shim's start-up is short
if TYPE_CHECKING:
    from collections.abc import Callable

try:  # the C module: `signal` imports enum, which costs a start-up 5 to 10 ms more
    import _signal as signal  # type: ignore[import-not-found]  # (no stubs)
except ImportError:  # pragma: no cover - an interpreter without it
    import signal

#: The first words of every line the shim writes on stderr.
PREFIX = "juicectl-shim:"
#: The line written when a signal the shim did not send ended the worker (the status is then
#: 128 + the signal).
SIGNAL_LINE = PREFIX + " the worker (pid {pid}) was killed by {name} (signal {number})"
#: The line written when the shim itself ended the worker with a signal, and why.
ENDED_LINE = PREFIX + " ended the worker (pid {pid}) with {name} (signal {number}): {why}"

# Linux prctl options (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# The signals that mean "end": the transport's, a user's, and our own parent-death signal.
_ENDING = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
# Bounds of the last steps: reaping after SIGKILL, and sweeping re-parented descendants.
_REAP_BOUND = 5.0


class _IgnoreOSError:
    """``contextlib.suppress(OSError)``, without importing contextlib (start-up time)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> bool:
        return kind is not None and issubclass(kind, OSError)


_IGNORE_OS_ERROR = _IgnoreOSError()


def _say(text: str) -> None:
    # The reader of stderr may be gone: the shim must still finish its work.
    with _IGNORE_OS_ERROR:
        os.write(2, (text + "\n").encode("utf-8", "replace"))


# Signal numbers to names, from the module itself (the numbers differ between systems).
_NAMES = {
    getattr(signal, name): name
    for name in dir(signal)
    if name.startswith("SIG") and not name.startswith("SIG_") and name[3:].isupper()
    and name not in ("SIGIOT", "SIGPOLL", "SIGCLD")
}


def _name(signum: int) -> str:
    return _NAMES.get(signum, f"signal {signum}")


def _prctl(option: int, value: int) -> bool:
    """Call Linux ``prctl``; False where there is none (another OS, no ctypes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        call = _prctl_call()
        return bool(call(option, value) == 0)
    except Exception:
        return False


_PRCTL: list[Callable[[int, int], int]] = []


def _prctl_call() -> Callable[[int, int], int]:
    """``prctl`` as a callable of (option, value), found once. Through ``_ctypes`` itself
    where it can: ``import ctypes`` costs this start-up 3 to 5 ms more, and the shim's
    start-up is on the path of every remote start."""
    if not _PRCTL:
        try:
            import _ctypes

            # None: the program itself, whose libc has prctl.
            handle = _ctypes.dlopen(None, os.RTLD_NOW)  # type: ignore[arg-type]
            address = _ctypes.dlsym(handle, "prctl")
            call_function = _ctypes.call_function

            def call(option: int, value: int) -> int:
                return int(call_function(address, (option, value, 0, 0, 0)))
        except (ImportError, AttributeError, OSError):
            import ctypes

            prctl = ctypes.CDLL(None).prctl

            def call(option: int, value: int) -> int:
                return int(prctl(option, value, 0, 0, 0))

        _PRCTL.append(call)
    return _PRCTL[0]


class _Options:
    def __init__(self, args: list[str]) -> None:
        self.grace = 1.0
        self.cwd: str | None = None
        self.clear_env = False
        self.env: dict[str, str] = {}
        index = 0
        while index < len(args) and args[index] != "--":
            flag = args[index]
            if flag == "-i":
                self.clear_env = True
                index += 1
                continue
            if index + 1 >= len(args) or flag not in ("-g", "-C", "-E"):
                raise SystemExit(f"{PREFIX} bad arguments: {args!r}")
            value = args[index + 1]
            if flag == "-g":
                self.grace = float(value)
            elif flag == "-C":
                self.cwd = value
            else:
                name, _, variable = value.partition("=")
                self.env[name] = variable
            index += 2
        self.argv = args[index + 1:]
        if not self.argv:
            raise SystemExit(f"{PREFIX} no command to run: {args!r}")

    def environment(self) -> dict[str, str]:
        base = {} if self.clear_env else dict(os.environ)
        base.update(self.env)
        return base


def _start_worker(options: _Options) -> int:
    """Fork and exec the worker as the leader of a new process group; exit 127 if it cannot
    be started (the exec's error comes back through a close-on-exec pipe)."""
    report_r, report_w = os.pipe()
    env = options.environment()
    shim = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: single-threaded (the shim starts no thread), so Python is safe
        stage = "setup"
        try:
            os.close(report_r)
            os.setpgid(0, 0)
            # A shim killed outright (SIGKILL, the OOM killer) cannot end the worker: the
            # kernel does then. Checked after, for a shim that died before the call.
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != shim:
                os._exit(127)
            for signum in (*_ENDING, signal.SIGCHLD, signal.SIGPIPE):
                signal.signal(signum, signal.SIG_DFL)
            if hasattr(signal, "SIGXFSZ"):
                signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            stage = "cwd"
            if options.cwd is not None:
                os.chdir(options.cwd)
            stage = "exec"
            os.execvpe(options.argv[0], options.argv, env)
        except OSError as error:
            message = f"{stage} {error.errno or 0} {error.strerror or error}"
            with _IGNORE_OS_ERROR:
                os.write(report_w, message.encode("utf-8", "replace"))
        finally:
            os._exit(127)
    os.close(report_w)
    # Both sides, so that no signal can find it in the shim's group; EACCES (it has exec'd)
    # or ESRCH (it died) mean that its own call did it.
    with _IGNORE_OS_ERROR:
        os.setpgid(pid, pid)
    report = b""
    while True:
        try:
            chunk = os.read(report_r, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        report += chunk
    os.close(report_r)
    if report:
        os.waitpid(pid, 0)
        stage, _, rest = report.decode("utf-8", "replace").partition(" ")
        _, _, reason = rest.partition(" ")
        if stage == "cwd":
            cwd = options.cwd
            _say(f"{PREFIX} cannot run {options.argv!r}: the working directory (cwd) {cwd!r}: "
                 f"{reason}")
        else:
            where = f" (cwd {options.cwd!r})" if options.cwd else ""
            _say(f"{PREFIX} cannot run {options.argv!r}: {reason}{where}")
        os._exit(127)
    return pid


def _children() -> list[int]:
    """This process's children, from /proc (empty where there is none)."""
    me = os.getpid()
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open("/proc/" + entry + "/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 1 and int(fields[1]) == me and fields[0] != b"Z":
            found.append(int(entry))
    return found


def _reap_all() -> None:
    """Reap every child that has exited (re-parented descendants too)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_group(pgid: int, signum: int) -> None:
    with _IGNORE_OS_ERROR:
        os.killpg(pgid, signum)


def _signal_worker(pid: int, signum: int) -> None:
    """``signum`` to the worker's group, and to the worker itself if it has moved to another
    group (``setpgid``). Only before it is reaped: this loop is its only reaper, so ``pid``
    still names it."""
    _kill_group(pid, signum)
    with _IGNORE_OS_ERROR:
        if os.getpgid(pid) != pid:
            os.kill(pid, signum)


def _sweep(pgid: int) -> None:
    """SIGKILL what is left of the worker's group and every descendant re-parented to us,
    until none is left (each one killed may hand us its own children), bounded."""
    _kill_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + _REAP_BOUND
    while time.monotonic() < deadline:
        _reap_all()
        left = _children()
        if not left:
            return
        for pid in left:
            with _IGNORE_OS_ERROR:
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


class _Watch:
    """The watch loop: the worker's exit, the hangups, the signals, and the ending's steps."""

    def __init__(self, pid: int, grace: float, wake: int, received: list[int]) -> None:
        self.pid = pid
        self.grace = grace
        self.wake = wake
        self.received = received
        self.status: int | None = None
        self.why = ""  # why the ending began
        self.sent: set[int] = set()  # the signals the shim sent the group
        self.term_at: float | None = None  # when SIGTERM is (or was) due
        self.kill_at: float | None = None  # when SIGKILL is due
        self.parent = os.getppid()

    def end(self, delay: float, why: str) -> None:
        """Begin the ending (or bring its SIGTERM forward): SIGTERM in ``delay`` seconds."""
        if not self.why:
            self.why = why
        due = time.monotonic() + delay
        if self.term_at is None or due < self.term_at:
            self.term_at = due

    def run(self) -> int:
        poller = select.poll()
        hangup = select.POLLHUP | select.POLLERR | select.POLLNVAL
        # On a socket, a peer that shut down its side shows as POLLRDHUP, not POLLHUP.
        poller.register(0, getattr(select, "POLLRDHUP", 0))
        poller.register(1, 0)
        poller.register(self.wake, select.POLLIN)
        while self.status is None:
            timeout = 1000  # at least once a second: the parent may die unannounced
            now = time.monotonic()
            for due in (self.term_at, self.kill_at):
                if due is not None:
                    timeout = min(timeout, max(0, int((due - now) * 1000) + 1))
            try:
                events = poller.poll(timeout)
            except InterruptedError:
                events = []
            for fd, mask in events:
                if fd == self.wake:
                    with _IGNORE_OS_ERROR:
                        os.read(self.wake, 512)
                elif fd == 0 and mask & (hangup | getattr(select, "POLLRDHUP", 0)):
                    poller.unregister(0)
                    # The worker saw end of input too: it may exit by itself first.
                    self.end(self.grace, "its input closed")
                elif fd == 1 and mask & hangup:
                    poller.unregister(1)
                    self.end(0, "its output lost its reader")
            while self.received:
                name = _name(self.received.pop())
                self.end(0, "the shim got " + name)
            if os.getppid() != self.parent:
                self.end(0, "the shim's parent died")
            self.reap()
            self.step()
        return self.status

    def reap(self) -> None:
        while self.status is None:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.status = 0
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.status = status

    def step(self) -> None:
        if self.status is not None:
            return
        now = time.monotonic()
        if self.term_at is not None and now >= self.term_at and self.kill_at is None:
            _signal_worker(self.pid, signal.SIGTERM)
            self.sent.add(signal.SIGTERM)
            self.kill_at = now + self.grace
        elif self.kill_at is not None and now >= self.kill_at:
            _signal_worker(self.pid, signal.SIGKILL)
            self.sent.add(signal.SIGKILL)
            self.kill_at = now + _REAP_BOUND


def main(args: list[str]) -> int:
    """Run the worker described by ``args``; return the status the shim exits with."""
    options = _Options(args)
    received: list[int] = []
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)

    def note(signum: int, frame: object) -> None:
        received.append(signum)

    for signum in _ENDING:
        signal.signal(signum, note)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the poll
    parent = os.getppid()
    # Out of the launcher's process group: a local parent-death guard ends its whole group
    # with SIGKILL, which would take the shim too, before it could end the worker's group.
    # Its parent's death (below) or its stdin's hangup tells it instead. A session leader
    # (behind setsid) may not move, and needs not.
    try:  # noqa: SIM105 - contextlib is one more import at every start
        os.setpgid(0, 0)
    except OSError:
        pass
    # Before the worker: a grandchild orphaned before this would go to init, not to us.
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGHUP)  # then the loop checks getppid() for a race
    pid = _start_worker(options)
    watch = _Watch(pid, options.grace, wake_r, received)
    watch.parent = parent
    status = watch.run()
    _sweep(pid)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number in watch.sent:
            _say(ENDED_LINE.format(pid=pid, name=_name(number), number=number, why=watch.why))
        else:
            _say(SIGNAL_LINE.format(pid=pid, name=_name(number), number=number))
        return 128 + number
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 1


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except SystemExit as stop:
        if isinstance(stop.code, str):
            _say(stop.code)
        code = stop.code if isinstance(stop.code, int) else 2
    os._exit(code)
