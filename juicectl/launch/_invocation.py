"""What a launcher hands the spawner: the command line to exec, and the user's command."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from juicectl.policy import LaunchSpec


@dataclass(frozen=True)
class ExitReading:
    """What a launcher makes of the exit of what it ran (``Invocation.read_exit``).

    A launcher that runs the command elsewhere knows what the local process's status means:
    ssh's 255 is its own failure, a shim's 128 + N is a signal on the far side, and an exit
    before the worker answered may mean it never ran there at all.

    Attributes:
        exit_status: the worker's exit status, if it exited normally (None: a signal).
        signal: the signal that ended the worker (or the local process), if one did.
        detail: words for humans that name where it ran and what happened ("" for nothing).
        launch_error: set when the worker never ran (the connection or the authentication
            failed, no Python there, no such program there): the start is then a launch
            failure, and waiters get a ``ProcessLaunchError`` with this error.
    """

    exit_status: int | None
    signal: int | None
    detail: str = ""
    launch_error: OSError | None = None


#: ``read_exit(returncode, stderr_tail, was_ready)``: ``returncode`` as ``Popen`` has it
#: (negative for a signal), the last stderr lines, and whether the worker had got ready.
ExitReader = Callable[[int, tuple[str, ...], bool], ExitReading]


@dataclass(frozen=True)
class Invocation:
    """One exec, ready to spawn: what runs, where, with which environment.

    Attributes:
        argv: what is executed. For the local launcher it is the user's command itself; a
            launcher that runs the command elsewhere puts its own program first (``ssh``,
            ``docker exec -i``, ...).
        env: the environment of the executed program, or None to inherit the parent's.
        cwd: its working directory, or None to inherit the parent's.
        command: the user's command (``LaunchSpec.argv``): what errors and logs name, whatever
            ``argv`` holds.
        where: where the command runs, for logs and errors (``"ssh user@host:22"``; ``""``
            for this machine).
        read_exit: how to read the exit of what ``argv`` started (None: as it is, the local
            launcher's case).
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] | None
    cwd: str | None
    command: tuple[str, ...]
    where: str = ""
    read_exit: ExitReader | None = None


class Launcher(Protocol):
    """Turns a ``LaunchSpec`` into the ``Invocation`` to exec.

    The process actor asks its launcher once per child, on its own thread (but see ``waits``
    below), and then spawns what it got under a parent-death guard
    (:func:`juicectl.launch.spawn`). A launcher checks what it can before anything is
    spawned, so that a failure names the user's program and its working directory rather
    than whatever program the launcher puts first.

    A launcher whose ``invocation`` may wait (for a connection, as the ssh launcher's
    session waits for its master) says so with a true ``waits`` attribute: the process
    actor then asks it on a thread of its own, so that a stop (``stop_process()``,
    ``ActorRegistry.stop_all()``) or the startup timeout ends the launch at once; its late
    answer is dropped. It may name where it runs the command with a ``where`` attribute,
    which such an abandoned launch's error then names.
    """

    def invocation(self, spec: LaunchSpec) -> Invocation:
        """Return what to exec for ``spec``.

        Raises:
            ProcessLaunchError: the command cannot be launched (naming the command, the
                working directory and the cause).
        """
        ...


class LaunchSession(Protocol):
    """A launcher opened for one controller: what its process actors ask, until ``close()``.

    A launcher that keeps something alive between launches (the ssh launcher's connection
    master) defines ``open(name) -> LaunchSession``; the controller opens it once, hands the
    session to its process actors (one at a time, each on its own thread), and closes it at
    ``close()``. :func:`open_session` opens any launcher: one without ``open`` is its own
    session, with nothing to close.
    """

    def invocation(self, spec: LaunchSpec) -> Invocation:
        """As :meth:`Launcher.invocation`."""
        ...

    def closing(self) -> None:
        """The controller's close has begun: a launch still waiting on something of the
        session's (the ssh master connecting) gives up at once. Idempotent."""
        ...

    def close(self) -> None:
        """Release what the session holds (stop processes, remove files). Idempotent."""
        ...


class _Sessionless:
    """A launcher that holds nothing between launches, as a session."""

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        # As the launcher says (see Launcher): read once, a launcher is a value.
        self.waits = bool(getattr(launcher, "waits", False))
        self.where = str(getattr(launcher, "where", ""))

    def invocation(self, spec: LaunchSpec) -> Invocation:
        return self.launcher.invocation(spec)

    def closing(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return repr(self.launcher)


def open_session(launcher: Launcher, name: str) -> LaunchSession:
    """Open ``launcher`` for the controller ``name`` (see :class:`LaunchSession`)."""
    opener = getattr(launcher, "open", None)
    if callable(opener):
        session: LaunchSession = opener(name)
        return session
    return _Sessionless(launcher)
