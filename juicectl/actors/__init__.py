"""The actors: the controller (the mode machine), the process actor (one child, from launch to
reaping), and the subscribers that run hooks."""

from __future__ import annotations

from juicectl.actors.controller import TRANSITIONS, ControllerActor, Mode, ProcessFactory
from juicectl.actors.process import ProcessActor
from juicectl.actors.subscribers import ForwardingActor, HookActor, subscriber_for

__all__ = [
    "TRANSITIONS",
    "ControllerActor",
    "ForwardingActor",
    "HookActor",
    "Mode",
    "ProcessActor",
    "ProcessFactory",
    "subscriber_for",
]
