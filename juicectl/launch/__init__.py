"""Launching a child: what to exec for a ``LaunchSpec``, and how it is tied to its parent.

Two steps, so that other ways of running the command (through ``ssh``, ``docker exec -i`` or
any exec prefix) fit beside the local one:

1. A **launcher** (:class:`Launcher`) turns the ``LaunchSpec`` into an :class:`Invocation`:
   the argv, environment and working directory to exec, and the user's command, which errors
   name. It checks what it can before anything runs. :class:`LocalLauncher`, the default, runs
   the command itself, after checking the working directory and finding the program on the
   child's ``PATH``.
2. :func:`spawn` starts the invocation with pipes on its stdin, stdout and stderr, in the
   process group of a **parent-death guard** (:class:`ParentDeathGuard`): a small shell that
   kills the whole group when this process dies, however it dies. No Python code runs
   between fork and exec.

The process actor (:mod:`juicectl.actors.process`) only asks its launcher and spawns what it
got; every failure on the way is a ``ProcessLaunchError`` naming the command and the working
directory.
"""

from __future__ import annotations

from juicectl.launch._guard import GUARD_SHELL, ParentDeathGuard
from juicectl.launch._invocation import Invocation, Launcher
from juicectl.launch._local import (
    LocalLauncher,
    check_cwd,
    find_program,
    launch_failure,
)
from juicectl.launch._spawn import SpawnedChild, spawn

__all__ = [
    "GUARD_SHELL",
    "Invocation",
    "Launcher",
    "LocalLauncher",
    "ParentDeathGuard",
    "SpawnedChild",
    "check_cwd",
    "find_program",
    "launch_failure",
    "spawn",
]
