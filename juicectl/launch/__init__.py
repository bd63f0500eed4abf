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

The launchers (values a ``LaunchSpec`` holds as ``launcher=``):

* :func:`local` (the default): the command runs here, as it is.
* :func:`ssh`: on another host, through OpenSSH's client, with one connection per controller.
* :func:`prefix`: behind any exec prefix (``docker exec -i``, ``kubectl exec -i``, ``srun``).

The last two run the worker under the **remote shim** (:mod:`juicectl.launch._shim`, sent as
``python3 -I -S -c '<source>'``), which ends the worker's process group, grandchildren
included, when the stream ends, and passes its exit back; their :class:`Invocation` carries
an ``ExitReader`` that turns ssh's 255, a missing remote Python and the shim's lines back
into a crash or a launch failure that names the host and the cause. A launcher that keeps
something between launches (the ssh connection master) is opened once per controller
(:func:`open_session`) and closed with it. See ``docs/remote.md``.
"""

from __future__ import annotations

from juicectl.launch._guard import GUARD_SHELL, ParentDeathGuard
from juicectl.launch._invocation import (
    ExitReader,
    ExitReading,
    Invocation,
    Launcher,
    LaunchSession,
    open_session,
)
from juicectl.launch._local import (
    LocalLauncher,
    check_cwd,
    find_program,
    launch_failure,
    local,
)
from juicectl.launch._prefix import PrefixLauncher, prefix
from juicectl.launch._remote import quote_command_line, shim_source
from juicectl.launch._spawn import SpawnedChild, spawn
from juicectl.launch._ssh import SshLauncher, SshSession, ssh

__all__ = [
    "GUARD_SHELL",
    "ExitReader",
    "ExitReading",
    "Invocation",
    "LaunchSession",
    "Launcher",
    "LocalLauncher",
    "ParentDeathGuard",
    "PrefixLauncher",
    "SpawnedChild",
    "SshLauncher",
    "SshSession",
    "check_cwd",
    "find_program",
    "launch_failure",
    "local",
    "open_session",
    "prefix",
    "quote_command_line",
    "shim_source",
    "spawn",
    "ssh",
]
