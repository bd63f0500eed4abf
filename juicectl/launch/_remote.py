"""What every launcher that runs the command elsewhere shares: the words it sends there, the
one quoting for a remote shell, and reading the exit back.

The worker's command goes either through the remote shim (:mod:`juicectl.launch._shim`, sent
as ``python3 -I -S -c '<source>'``), which sets the working directory and the environment
itself, or, without the shim, as it is, behind ``env -i NAME=VALUE ...`` when an environment
is given (and ``cd DIR &&`` when a remote shell runs it).

A remote shell (ssh runs the command line it is given through the login shell of the remote
user) gets one command line in which every word is quoted once with ``shlex.quote``: single
quotes around anything that is not a plain word, ``'"'"'`` for a single quote inside. The
result means the same words to every POSIX shell (sh, dash, bash, zsh, ksh), whatever they
hold: spaces, quotes, ``$``, ``;``, backslashes, newlines, empty strings, non-ASCII text.
"""

from __future__ import annotations

import ast
import functools
import importlib.resources
import math
import re
import shlex
import signal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from juicectl.exceptions import ProcessLaunchError
from juicectl.launch._invocation import ExitReading
from juicectl.launch._shim import ENDED_LINE, PREFIX, SIGNAL_LINE

if TYPE_CHECKING:
    from juicectl.policy import LaunchSpec

#: The share of ``kill_timeout`` the shim waits at each of its steps (a worker whose input
#: ended exits, then SIGTERM; SIGKILL): twice that leaves the shim's whole ending inside the
#: controller's close-stdin step, so that the remote group is gone before the local process
#: is signalled, and the stop is only over once the remote side says so.
SHIM_GRACE_SHARE = 0.4


@functools.cache
def shim_source() -> str:
    """The shim's source as sent: without docstrings and comments (smaller command lines)."""
    text = importlib.resources.files("juicectl.launch").joinpath("_shim.py").read_text("utf-8")
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            # Every body that holds a docstring holds more (the shim has no empty class).
            body.pop(0)
    return ast.unparse(tree) + "\n"


def quote_command_line(words: Sequence[str]) -> str:
    """One command line for a POSIX shell that runs exactly ``words`` (see the module)."""
    return " ".join(shlex.quote(word) for word in words)


def remote_words(spec: LaunchSpec, *, python: str, shim: bool) -> list[str]:
    """The words to run on the far side for ``spec``: through the shim, or as they are
    (behind ``env -i`` when an environment is given; the working directory, without the
    shim, is the caller's to set)."""
    argv = list(spec.argv)
    if shim:
        grace = max(0.05, spec.kill_timeout * SHIM_GRACE_SHARE)
        words = [python, "-I", "-S", "-c", shim_source(), "-g", f"{grace:.3f}"]
        if spec.cwd is not None:
            words += ["-C", spec.cwd]
        if spec.env is not None:
            words.append("-i")
            for name, value in spec.env.items():
                words += ["-E", f"{name}={value}"]
        return [*words, "--", *argv]
    if spec.env is not None:
        return ["env", "-i", "--", *(f"{name}={value}" for name, value in spec.env.items()),
                *argv]
    return argv


def shell_command_line(spec: LaunchSpec, *, python: str, shim: bool) -> str:
    """The command line a remote shell runs for ``spec`` (``exec``: no shell stays between
    the transport and what it runs)."""
    line = "exec " + quote_command_line(remote_words(spec, python=python, shim=shim))
    if spec.cwd is not None and not shim:
        line = f"cd -- {shlex.quote(spec.cwd)} && {line}"
    return line


def check_python(python: object) -> str:
    """The ``python=`` option: the remote Python 3 that runs the shim."""
    if not isinstance(python, str) or not python or any(c in python for c in "\0\n\r"):
        raise ValueError(
            f"python must be the name or path of Python 3 on the far side (a non-empty str "
            f"without NUL or newline), not {python!r}"
        )
    return python


def check_flag(name: str, value: object) -> bool:
    """A ``True`` / ``False`` option."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return value


def signal_name(signum: int) -> str:
    """``SIGKILL`` for 9, ``signal 99`` for a number without a name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _line_pattern(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for field, part in (("pid", r"\d+"), ("name", r"\S+"), ("number", r"(\d+)"), ("why", ".*")):
        pattern = pattern.replace(re.escape("{" + field + "}"), part)
    return re.compile(pattern + "$")


# The shim's two lines for a worker ended by a signal: one it did not send, one it did.
_SHIM_LINES = ((_line_pattern(SIGNAL_LINE), False), (_line_pattern(ENDED_LINE), True))


def _shim_signal(line: str, returncode: int) -> tuple[int, bool] | None:
    """(signal, sent by the shim) if ``line`` is the shim's line for ``returncode``."""
    for pattern, sent in _SHIM_LINES:
        match = pattern.match(line)
        if match is not None and int(match.group(1)) == returncode - 128:
            return int(match.group(1)), sent
    return None


def _last_line(tail: tuple[str, ...], *, skip_shim: bool = False) -> str:
    for line in reversed(tail):
        text = line.strip()
        if text and not (skip_shim and text.startswith(PREFIX)):
            return text
    return ""


class RemoteExitReader:
    """Reads the exit of a launch that ran elsewhere (``Invocation.read_exit``).

    Args:
        where: where it ran, for the words (``"ssh user@host:22"``).
        command: the user's command, for launch errors.
        python: the remote Python the shim runs with (None: no shim).
        transport_failure: the exit status the transport itself fails with (ssh: 255), or
            None if it has none of its own.
        shared_cause: why a shared connection (the ssh master) ended, asked when the
            transport failed without saying why ("" while it runs).
    """

    def __init__(
        self,
        where: str,
        command: tuple[str, ...],
        python: str | None,
        transport_failure: int | None,
        shared_cause: Callable[[], str] | None = None,
    ) -> None:
        self.where = where
        self.command = command
        self.python = python
        self.transport_failure = transport_failure
        self.shared_cause = shared_cause

    def __call__(self, returncode: int, tail: tuple[str, ...], ready: bool) -> ExitReading:
        where = self.where
        if returncode < 0:
            # The local end (the ssh client, the exec prefix) was killed.
            return ExitReading(None, -returncode, f"on {where}")
        if returncode == self.transport_failure:
            cause = _last_line(tail, skip_shim=True)
            shared = self.shared_cause() if self.shared_cause is not None else ""
            if shared:
                cause = f"{cause}; its connection: {shared}" if cause else shared
            cause = cause or "no message"
            if not ready:
                return self._launch_error(returncode, f"{where} failed: {cause}")
            return ExitReading(returncode, None, f"{where} ended: {cause}")
        if returncode in (126, 127) and not ready:
            cause = _last_line(tail) or f"exit status {returncode}"
            hint = ""
            if self.python is not None and not cause.startswith(PREFIX):
                hint = f" (is {self.python!r} a Python 3 there? the shim runs with it)"
            return self._launch_error(returncode, f"on {where}: {cause}{hint}")
        shim = _shim_signal(_last_line(tail), returncode) if self.python is not None else None
        if shim is not None:
            number, sent = shim
            if sent:
                # The shim's own ending, as asked (its input closed) or as the link ended:
                # an exit of the stop, not a signal from outside.
                return ExitReading(
                    returncode, None, f"on {where}, the shim ended it with {signal_name(number)}"
                )
            return ExitReading(None, number, f"on {where}")
        return ExitReading(returncode, None, f"on {where}")

    def _launch_error(self, returncode: int, text: str) -> ExitReading:
        error = OSError(text)
        message = str(ProcessLaunchError(self.command, error))
        return ExitReading(returncode, None, message, launch_error=error)


def seconds(name: str, value: object, *, positive: bool = True) -> float:
    """A number of seconds option, checked."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0 seconds, not {value!r}")
    return float(value)
