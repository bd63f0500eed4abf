"""What a launcher hands the spawner: the command line to exec, and the user's command."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from juicectl.policy import LaunchSpec


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
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] | None
    cwd: str | None
    command: tuple[str, ...]


class Launcher(Protocol):
    """Turns a ``LaunchSpec`` into the ``Invocation`` to exec.

    The process actor asks its launcher once per child, on the actor's own thread, and then
    spawns what it got under a parent-death guard (:func:`juicectl.launch.spawn`). A launcher
    checks what it can before anything is spawned, so that a failure names the user's
    program and its working directory rather than whatever program the launcher puts first.
    """

    def invocation(self, spec: LaunchSpec) -> Invocation:
        """Return what to exec for ``spec``.

        Raises:
            ProcessLaunchError: the command cannot be launched (naming the command, the
                working directory and the cause).
        """
        ...
