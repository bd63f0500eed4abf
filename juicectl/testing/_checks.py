"""The testing helpers' own options, checked at the door: the worker and the concurrency.

``ProcessController.start`` checks the options it takes; these are the ones the helpers add
(``connect``, ``FakeController``, ``ControllerFactory`` and ``worker_argv``), checked before
anything starts, with one message per mistake whichever helper was given it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from juicectl.juice import Responders

__all__ = ["check_concurrency", "check_worker"]


def check_worker(worker: object) -> None:
    """A worker to serve in memory: a class or an instance with responders (methods marked
    with ``@Command.responder``), or a ``ScriptedChild``.

    Raises:
        TypeError: anything else (the message names the value; for ``"module:Class"`` it
            points at the fixture that runs one in a child process).
    """
    from juicectl.testing._children import ScriptedChild  # here: _children imports this module

    if worker is None or isinstance(worker, str | bytes | Sequence | Mapping):
        hint = (
            " (a FakeController serves a class or an object in memory; to run "
            "'package.module:Class' in a child process, use the juicectl_controller fixture)"
            if isinstance(worker, str)
            else ""
        )
        raise TypeError(f"worker must be a worker class or instance, not {worker!r}{hint}")
    scripted = (
        issubclass(worker, ScriptedChild)
        if isinstance(worker, type)
        else isinstance(worker, ScriptedChild)
    )
    if not scripted and not _has_responders(worker):
        raise TypeError(
            f"worker must be a worker class or instance, not {worker!r}: it answers no "
            "command (no method marked with @Command.responder)"
        )


def _has_responders(worker: object) -> bool:
    if isinstance(worker, type):
        # Responders reads an object's own namespace, and a class's own is its __dict__.
        return any(Responders(klass, builtins=False).commands for klass in worker.__mro__)
    return bool(Responders(worker, builtins=False).commands)


def check_concurrency(concurrency: object) -> None:
    """How many handlers the child runtime runs at once: None (the worker's own setting) or
    an int of at least 1.

    Raises:
        TypeError: not an int (``bool`` included) or None.
        ValueError: below 1.
    """
    if concurrency is None:
        return
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise TypeError(f"concurrency must be an int or None, not {concurrency!r}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, not {concurrency!r}")
