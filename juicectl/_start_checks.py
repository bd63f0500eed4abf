"""The checks ``ProcessController.start`` and ``ProcessPool.start`` make at the door.

Every option a caller gives is checked before any actor or process starts, and a bad one
raises ``TypeError`` or ``ValueError`` naming it: a controller and a pool take the same hooks,
subscribers and names, and say the same things about them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pykka

from juicectl.policy import RestartPolicy

__all__ = ["check_callable", "check_hook", "checked_name", "checked_policy",
           "checked_subscribers"]


def checked_name(name: object, made_up: Callable[[], str]) -> str:
    """``start(name=...)``: None (then ``made_up()``) or a non-empty str."""
    if name is None:
        return made_up()
    if not isinstance(name, str):
        raise TypeError(f"name must be a str or None, not {type(name).__name__} {name!r}")
    if not name:
        raise ValueError("name must be a non-empty str or None (for a made-up name), not ''")
    return name


def checked_policy(restart: object) -> RestartPolicy:
    """``start(restart=...)``: None (the default policy) or a ``RestartPolicy``."""
    if restart is None:
        return RestartPolicy()
    if not isinstance(restart, RestartPolicy):
        raise TypeError(f"restart must be a juicectl.RestartPolicy or None, not {restart!r}")
    return restart


def check_callable(value: object, option: str, arguments: int, expected: str) -> None:
    """``value`` must be None, or a callable that can be called with ``arguments``
    positional arguments (when its signature can be read)."""
    if value is None:
        return
    if not callable(value):
        raise TypeError(f"{option} must be {expected}, not {value!r}")
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        return  # a builtin without a signature: it will say so itself
    try:
        signature.bind(*range(arguments))
    except TypeError:
        label = getattr(value, "__name__", type(value).__name__)
        raise TypeError(
            f"{option} must be {expected}: {label}{signature} cannot be called with "
            f"{arguments} argument{'s' if arguments != 1 else ''}"
        ) from None


def check_hook(hook: object, option: str) -> None:
    """A hook: None, a ``pykka.ActorRef`` of a running actor, or a no-argument callable."""
    if isinstance(hook, pykka.ActorRef):
        if not hook.is_alive():
            raise ValueError(f"{option} is an ActorRef of an actor that has stopped: {hook!r}")
        return
    check_callable(hook, option, 0, "a no-argument callable or a pykka.ActorRef, or None")


def checked_subscribers(
    subscribers: object, option: str = "subscribers"
) -> list[pykka.ActorRef[Any]]:
    """``start(subscribers=...)``: an iterable of ``pykka.ActorRef``s of running actors."""
    if isinstance(subscribers, pykka.ActorRef):
        raise TypeError(
            f"{option} must be an iterable of pykka.ActorRef, not one ActorRef: write "
            f"{option}=[{subscribers!r}]"
        )
    if isinstance(subscribers, str | bytes | Mapping) or not isinstance(subscribers, Iterable):
        raise TypeError(f"{option} must be an iterable of pykka.ActorRef, not {subscribers!r}")
    refs = list(subscribers)
    for index, ref in enumerate(refs):
        if not isinstance(ref, pykka.ActorRef):
            hint = (
                " (a callable: give it as on_process_startup or on_process_termination, or "
                "wrap it in an actor)"
                if callable(ref)
                else ""
            )
            raise TypeError(f"{option}[{index}] must be a pykka.ActorRef, not {ref!r}{hint}")
        if not ref.is_alive():
            raise ValueError(f"{option}[{index}] is an actor that has stopped: {ref!r}")
    return refs
