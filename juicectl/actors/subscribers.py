"""Subscriber actors: run the startup and termination hooks off the controller's thread.

The controller tells every subscriber every event (``ModeChanged``, ``ProcessStarted``,
``ProcessTerminated``, ``GaveUp``). The seed's hooks are no-argument callables run on some
events only, so each one is wrapped in a ``HookActor`` that picks its events and calls the hook;
a hook that raises is logged (``hook_failed``) and changes nothing else. A user's own
``ActorRef`` given as a hook is wrapped in a ``ForwardingActor`` that passes on only the
matching events. ``subscriber_for`` does either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pykka

from juicectl._log import get_logger

__all__ = ["ForwardingActor", "HookActor", "publish", "subscriber_for"]

log = get_logger(__name__)


def _event_types(event_types: Iterable[type] | None) -> tuple[type, ...] | None:
    return None if event_types is None else tuple(event_types)


def _matches(event: object, event_types: tuple[type, ...] | None) -> bool:
    return event_types is None or isinstance(event, event_types)


class HookActor(pykka.ThreadingActor):
    """Calls ``hook()`` for each event of ``event_types`` it is told (every event if None).

    Args:
        hook: a no-argument callable (the seed's ``onProcessStartup`` form).
        event_types: the event classes that trigger the hook, or None for all.
        name: a label for the log lines (the controller's name, say).
    """

    use_daemon_thread = True
    """Like the controller's: a hook actor must not keep the interpreter from exiting."""

    def __init__(
        self,
        hook: Callable[[], object],
        event_types: Iterable[type] | None = None,
        name: str = "",
    ) -> None:
        super().__init__()
        self._hook = hook
        self._event_types = _event_types(event_types)
        self._log = log.bind(controller=name, hook=getattr(hook, "__qualname__", repr(hook)))

    def on_receive(self, message: Any) -> Any:
        """Call the hook if ``message`` is an event it waits for; log it if it raises."""
        if not _matches(message, self._event_types):
            return None
        try:
            self._hook()
        except Exception:
            # A broken hook must not disturb the controller or kill this actor: later
            # events still reach it.
            self._log.exception("hook_failed", event_type=type(message).__name__)
        return None


class ForwardingActor(pykka.ThreadingActor):
    """Tells ``target`` each event of ``event_types`` it is told (every event if None).

    A target that has stopped is logged once (``subscriber_gone``) and no longer told.
    """

    use_daemon_thread = True
    """Like the controller's: a subscriber must not keep the interpreter from exiting."""

    def __init__(
        self,
        target: pykka.ActorRef[Any],
        event_types: Iterable[type] | None = None,
        name: str = "",
    ) -> None:
        super().__init__()
        self._target: pykka.ActorRef[Any] | None = target
        self._event_types = _event_types(event_types)
        self._log = log.bind(controller=name, subscriber=str(target))

    def on_receive(self, message: Any) -> Any:
        """Pass ``message`` on if it is an event the target wants."""
        if self._target is None or not _matches(message, self._event_types):
            return None
        try:
            self._target.tell(message)
        except pykka.ActorDeadError:
            self._log.info("subscriber_gone")
            self._target = None
        return None


def subscriber_for(
    hook: Callable[[], object] | pykka.ActorRef[Any],
    event_types: Iterable[type] | None,
    *,
    name: str = "",
) -> pykka.ActorRef[Any]:
    """A started subscriber actor that reacts to ``event_types`` only (all if None).

    ``hook`` is a no-argument callable (wrapped in a ``HookActor``) or an ``ActorRef`` (wrapped
    in a ``ForwardingActor``, so it is told the matching events only). The caller owns the
    actor returned and stops it when done.
    """
    if isinstance(hook, pykka.ActorRef):
        return ForwardingActor.start(hook, event_types, name)
    if not callable(hook):
        raise TypeError(f"a hook must be a callable or a pykka.ActorRef, not {hook!r}")
    return HookActor.start(hook, event_types, name)


def publish(subscribers: list[pykka.ActorRef[Any]], event: object) -> list[pykka.ActorRef[Any]]:
    """Tell every subscriber ``event``; remove the ones that have stopped, and return them."""
    gone = []
    for subscriber in list(subscribers):
        try:
            subscriber.tell(event)
        except pykka.ActorDeadError:
            subscribers.remove(subscriber)
            gone.append(subscriber)
    return gone
