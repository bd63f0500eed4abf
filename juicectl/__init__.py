"""juicectl: supervise a child process and talk to it with Juice boxes over its stdio.

The controller's names are exported lazily so that ``import juicectl.child`` (in a worker
process) loads only the codec, never pykka or structlog.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "ProcessController": "juicectl.controller",
    "ProcessPool": "juicectl.pool",
    "Connection": "juicectl.connection",
    "ConnectionOptions": "juicectl.policy",
    "RestartPolicy": "juicectl.policy",
    "LaunchSpec": "juicectl.policy",
    "JuicectlError": "juicectl.exceptions",
    "ProcessUnavailable": "juicectl.exceptions",
    "ProcessLaunchError": "juicectl.exceptions",
    "ControllerClosed": "juicectl.exceptions",
    "RequestTimeout": "juicectl.exceptions",
    "TooManyRequests": "juicectl.exceptions",
    "StopResult": "juicectl.messages",
    "ReplyFuture": "juicectl._future",
    "local": "juicectl.launch",
    "ssh": "juicectl.launch",
    "prefix": "juicectl.launch",
}

__all__ = [
    "Connection",
    "ConnectionOptions",
    "ControllerClosed",
    "JuicectlError",
    "LaunchSpec",
    "ProcessController",
    "ProcessLaunchError",
    "ProcessPool",
    "ProcessUnavailable",
    "ReplyFuture",
    "RequestTimeout",
    "RestartPolicy",
    "StopResult",
    "TooManyRequests",
    "__version__",
    "local",
    "prefix",
    "ssh",
]

if TYPE_CHECKING:
    from juicectl._future import ReplyFuture
    from juicectl.connection import Connection
    from juicectl.controller import ProcessController
    from juicectl.exceptions import (
        ControllerClosed,
        JuicectlError,
        ProcessLaunchError,
        ProcessUnavailable,
        RequestTimeout,
        TooManyRequests,
    )
    from juicectl.launch import local, prefix, ssh
    from juicectl.messages import StopResult
    from juicectl.policy import ConnectionOptions, LaunchSpec, RestartPolicy
    from juicectl.pool import ProcessPool


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'juicectl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
