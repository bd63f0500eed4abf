"""The prefix launcher: the worker runs behind any exec prefix (``docker exec -i NAME``,
``kubectl exec -i POD --``, ``srun``, ``sudo -u USER``, ...).

``prefix([...])`` execs the prefix's words followed by the worker's: through the remote shim
by default (``python3 -I -S -c '<the shim>' ... -- worker args``), so that the worker's group
ends when the prefix's stream ends, which ``docker exec`` and ``kubectl exec`` do not do by
themselves (a killed client leaves the process running in the container). Without the shim
the worker's words follow the prefix as they are (behind ``env -i`` for an environment).

A prefix whose last word takes a command line for a shell rather than argv words (``ssh
HOST``, ``gcloud compute ssh HOST --command``) says so with ``shell_command=True``: the
worker's words are then quoted once into one command line, as the ssh launcher does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from juicectl.exceptions import ProcessLaunchError
from juicectl.launch._invocation import Invocation
from juicectl.launch._local import find_program
from juicectl.launch._remote import (
    RemoteExitReader,
    check_flag,
    check_python,
    remote_words,
    shell_command_line,
)

if TYPE_CHECKING:
    from juicectl.policy import LaunchSpec


@dataclass(frozen=True)
class PrefixLauncher:
    """Runs the command behind an exec prefix: :func:`prefix`. The attributes are its
    arguments, checked."""

    words: tuple[str, ...]
    shim: bool = True
    python: str = "python3"
    shell_command: bool = False

    def __post_init__(self) -> None:
        words: object = self.words
        if isinstance(words, str | bytes) or not isinstance(words, Sequence) or not words:
            raise ValueError(
                "prefix needs a non-empty list of words (the program first, never run "
                f"through a shell), not {words!r}"
            )
        for index, word in enumerate(words):
            if not isinstance(word, str) or "\0" in word:
                raise TypeError(
                    f"every word of the prefix must be a str without NUL: words[{index}] is "
                    f"{word!r} in {list(words)!r}"
                )
        if not words[0]:
            raise ValueError(f"the prefix's program (its first word) is empty: {list(words)!r}")
        object.__setattr__(self, "words", tuple(words))
        check_flag("shim", self.shim)
        check_python(self.python)
        check_flag("shell_command", self.shell_command)

    @property
    def where(self) -> str:
        """The prefix, as logs and errors name it."""
        return "prefix " + " ".join(self.words)

    def check(self, spec: LaunchSpec) -> None:
        """At ``LaunchSpec``'s door: a ``cwd`` needs the shim or a shell on the far side.

        Raises:
            ValueError: ``cwd`` is set, with neither the shim nor ``shell_command``.
        """
        if spec.cwd is not None and not self.shim and not self.shell_command:
            raise ValueError(
                f"cwd {spec.cwd!r} cannot be set behind {self.where!r} without the shim: "
                "use shim=True (the default), or shell_command=True if the prefix runs a "
                "shell, or leave cwd None"
            )

    def invocation(self, spec: LaunchSpec) -> Invocation:
        """The prefix followed by the worker's words (or command line).

        Raises:
            ProcessLaunchError: the prefix's program is not found or not executable here,
                or a ``cwd`` cannot be set (see :meth:`check`).
        """
        command = tuple(spec.argv)
        try:
            self.check(spec)
            find_program(self.words[0], None, None)
        except (OSError, ValueError) as problem:
            text = problem.strerror if isinstance(problem, OSError) else str(problem)
            raise ProcessLaunchError(command, OSError(f"{self.where}: {text}")) from None
        if self.shell_command:
            tail = [shell_command_line(spec, python=self.python, shim=self.shim)]
        else:
            tail = remote_words(spec, python=self.python, shim=self.shim)
        reader = RemoteExitReader(self.where, command, self.python if self.shim else None, None)
        return Invocation(argv=(*self.words, *tail), env=None, cwd=None, command=command,
                          where=self.where, read_exit=reader)


def prefix(
    words: Sequence[str],
    *,
    shim: bool = True,
    python: str = "python3",
    shell_command: bool = False,
) -> PrefixLauncher:
    """A launcher that runs the worker behind the exec prefix ``words``.

    Args:
        words: the prefix, as a list: ``["docker", "exec", "-i", "box"]``,
            ``["kubectl", "exec", "-i", "pod", "--"]``. Looked up on this process's ``PATH``.
        shim: run the worker under the remote shim (default; needs ``python`` on the far
            side). False runs the worker's words as they are.
        python: the Python 3 that runs the shim on the far side.
        shell_command: the prefix's last word takes one command line for a shell (as
            ``ssh HOST`` does): the worker's words are quoted into one.

    Raises:
        TypeError, ValueError: an option is wrong (the message names it).
    """
    return PrefixLauncher(
        words=words,  # type: ignore[arg-type]  # checked and made a tuple
        shim=shim,
        python=python,
        shell_command=shell_command,
    )
