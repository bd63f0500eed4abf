"""Every message an actor of juicectl sends or receives, and the events subscribers receive.

Orders are imperative (``GetProcess``), notifications past tense (``ChildProcessCreated``).
All are frozen dataclasses. Every message about a child carries its *generation*: the
controller numbers each child it launches, and ignores (and logs) a message from an older one.

This package imports nothing else of juicectl's: the reply futures and the connection travel
as opaque objects. The underscore names are the controller actor's private messages, kept here
beside the public ones (as pykka keeps ``_ActorStop`` in its ``messages`` module): only
juicectl's own handle and timer send them.
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
from juicectl.messages._messages import (
    _Close as _Close,
)
from juicectl.messages._messages import (
    _GetMode as _GetMode,
)
from juicectl.messages._messages import (
    _GetStats as _GetStats,
)
from juicectl.messages._messages import (
    _HurryStop as _HurryStop,
)
from juicectl.messages._messages import (
    _RestartDue as _RestartDue,
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
