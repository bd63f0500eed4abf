"""The local launcher: run the user's command on this machine, as it is.

Before anything is spawned it checks the two things that otherwise come back from the OS as
the same "No such file or directory": the working directory (``cwd``), and the program
(``argv[0]``, looked up the way ``subprocess`` looks it up: on the child's ``PATH``, relative to
the child's working directory). So a missing ``cwd`` is named as the ``cwd``, never as a
missing program, and a program that is not on ``PATH`` says where it was looked for.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from juicectl.exceptions import ProcessLaunchError
from juicectl.launch._invocation import Invocation

if TYPE_CHECKING:
    from juicectl.policy import LaunchSpec


@dataclass(frozen=True)
class LocalLauncher:
    """Runs the command itself on this machine (the default launcher): :func:`local`."""

    def check(self, spec: LaunchSpec) -> None:
        """At ``LaunchSpec``'s door: the working directory must exist here.

        Raises:
            ValueError: the ``cwd`` is not a usable directory (the message names it).
        """
        if spec.cwd is not None:
            try:
                check_cwd(spec.cwd)
            except OSError as problem:
                raise ValueError(problem.strerror) from None

    def invocation(self, spec: LaunchSpec) -> Invocation:
        """Check the working directory and the program; return the command unchanged.

        Raises:
            ProcessLaunchError: the ``cwd`` is not a usable directory, or the program is not
                found or not executable.
        """
        command = tuple(spec.argv)
        env = dict(spec.env) if spec.env is not None else None
        try:
            if spec.cwd is not None:
                check_cwd(spec.cwd)
            find_program(command[0], env, spec.cwd)
        except OSError as problem:
            raise ProcessLaunchError(command, problem) from None
        return Invocation(argv=command, env=env, cwd=spec.cwd, command=command)


def local() -> LocalLauncher:
    """The default launcher: the command runs on this machine, as it is."""
    return LocalLauncher()


def check_cwd(cwd: str) -> None:
    """Check that ``cwd`` can be a child's working directory.

    Raises:
        OSError: it cannot (``FileNotFoundError``, ``NotADirectoryError``,
            ``PermissionError``); the ``strerror`` names it as the working directory.
    """
    what = f"the working directory (cwd) {cwd!r}"
    try:
        mode = os.stat(cwd).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{what} does not exist", cwd) from None
    except NotADirectoryError:
        raise NotADirectoryError(errno.ENOTDIR, f"{what} is not a directory", cwd) from None
    except OSError as error:
        raise OSError(error.errno, f"{what} is unusable: {error.strerror}", cwd) from None
    if not stat.S_ISDIR(mode):
        raise NotADirectoryError(errno.ENOTDIR, f"{what} is not a directory", cwd)
    if not os.access(cwd, os.X_OK):
        raise PermissionError(errno.EACCES, f"{what} cannot be entered: permission denied", cwd)


def find_program(program: str, env: Mapping[str, str] | None, cwd: str | None) -> str:
    """The file a child with environment ``env`` (None: this process's), started in ``cwd``
    (None: this process's), executes for ``program``.

    The lookup is the one ``subprocess`` does: a name with a ``/`` is a path (relative to the
    child's working directory), any other name is looked for in each directory of the
    child's ``PATH``. The first executable regular file wins.

    Raises:
        FileNotFoundError: there is no such file (for a name: in no directory of ``PATH``,
            which the message lists).
        PermissionError: what was found is not executable, or is a directory.
    """
    if os.path.dirname(program):
        candidates = [program]
        relative = not os.path.isabs(program)
    else:
        directories = os.get_exec_path(env)
        candidates = [os.path.join(directory, program) for directory in directories]
        relative = any(not os.path.isabs(directory) for directory in directories)
    refused: OSError | None = None
    for candidate in candidates:
        path = _from(cwd, candidate)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode):
            refused = refused or PermissionError(
                errno.EACCES, f"Permission denied: {candidate!r} is a directory", candidate
            )
        elif not stat.S_ISREG(mode) or not os.access(path, os.X_OK):
            refused = refused or PermissionError(
                errno.EACCES, f"Permission denied: {candidate!r} is not executable", candidate
            )
        else:
            return path
    if refused is not None:
        raise _with_cwd(refused, cwd, relative)
    if os.path.dirname(program):
        missing = FileNotFoundError(errno.ENOENT, "No such file or directory", program)
    else:
        searched = os.pathsep.join(os.get_exec_path(env))
        missing = FileNotFoundError(
            errno.ENOENT,
            f"No such file or directory: {program!r} is not on PATH ({searched})",
            program,
        )
    raise _with_cwd(missing, cwd, relative)


def launch_failure(invocation: Invocation, error: BaseException) -> ProcessLaunchError:
    """The ``ProcessLaunchError`` for an exception raised while spawning ``invocation``.

    Whatever was raised (an ``OSError`` from the exec, a ``TypeError`` or ``ValueError`` from
    ``subprocess`` for an argument it refused), the error names the user's command and the
    working directory; the original exception is the ``os_error``'s ``__cause__``.
    """
    cwd = invocation.cwd
    if isinstance(error, OSError) and error.errno is not None:
        if cwd is not None and error.filename == cwd:
            # subprocess reports a failed chdir with the cwd as the file name.
            try:
                check_cwd(cwd)
                problem = OSError(
                    error.errno,
                    f"the working directory (cwd) {cwd!r} is unusable: {error.strerror}",
                    cwd,
                )
            except OSError as found:
                problem = found
        else:
            text = error.strerror or str(error)
            interpreter = (
                _missing_interpreter(invocation) if error.errno == errno.ENOENT else None
            )
            if interpreter is not None:
                text += (
                    f": {invocation.argv[0]!r} names {interpreter!r} on its #! line, "
                    "which does not exist"
                )
            elif error.filename is not None:
                text += f": {error.filename!r}"
            problem = _with_cwd(OSError(error.errno, text, error.filename), cwd, True)
    else:
        problem = _with_cwd(OSError(f"{type(error).__name__}: {error}"), cwd, True)
    problem.__cause__ = error
    return ProcessLaunchError(invocation.command, problem)


def _from(cwd: str | None, path: str) -> str:
    """``path`` as the child sees it from its working directory ``cwd``."""
    return path if cwd is None or os.path.isabs(path) else os.path.join(cwd, path)


def _with_cwd(error: OSError, cwd: str | None, relevant: bool) -> OSError:
    """``error`` with the working directory added to its text: always when it was chosen,
    and when it is inherited only if it matters (a relative path was involved)."""
    if cwd is not None:
        where = f" (cwd {cwd!r})"
    elif relevant:
        try:
            where = f" (cwd {os.getcwd()!r}, the parent's)"
        except OSError:
            where = " (cwd: the parent's, which no longer exists)"
    else:
        return error
    if error.errno is None:
        return OSError(str(error) + where)
    return OSError(error.errno, (error.strerror or "") + where, error.filename)


def _missing_interpreter(invocation: Invocation) -> str | None:
    """The interpreter named on the program's ``#!`` line, if it is a script with one and that
    interpreter does not exist (the exec then fails as if the script itself were missing)."""
    try:
        path = find_program(invocation.argv[0], invocation.env, invocation.cwd)
        with open(path, "rb") as script:
            first = script.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].strip().split()
    if not words:
        return None
    interpreter = os.fsdecode(words[0])
    return None if os.path.exists(interpreter) else interpreter
