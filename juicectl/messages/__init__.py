"""Every message an actor of juicectl sends or receives, and the events subscribers receive.

Orders are imperative (``GetProcess``), notifications past tense (``ChildProcessCreated``).
All are frozen dataclasses. Every message about a child carries its *generation*: the
controller numbers each child it launches, and ignores (and logs) a message from an older one.

This package imports nothing else of juicectl's: the reply futures and the connection travel
as opaque objects.
"""

from juicectl.messages._messages import (
    ChildProcessCreated,
    ChildProcessTerminated,
    GaveUp,
    GetProcess,
    ModeChanged,
    ProcessStarted,
    ProcessTerminated,
    StopChild,
    StopProcess,
    StopResult,
    Subscribe,
    TerminationReason,
)

__all__ = [
    "ChildProcessCreated",
    "ChildProcessTerminated",
    "GaveUp",
    "GetProcess",
    "ModeChanged",
    "ProcessStarted",
    "ProcessTerminated",
    "StopChild",
    "StopProcess",
    "StopResult",
    "Subscribe",
    "TerminationReason",
]
