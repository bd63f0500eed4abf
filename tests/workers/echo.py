"""Echo workers the tests share (`python -m juicectl.child tests.workers.echo:X`)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from juicectl.child import JuiceChild
from tests.workers.commands import Echo, Exit, Fail, Oops, Pid, Sleep


class EchoWorker(JuiceChild):
    """Echo, Sleep, Pid, Exit and Fail."""

    @Echo.responder
    def echo(self, value: str) -> dict[str, Any]:
        return {"value": value}

    @Sleep.responder
    def sleep(self, seconds: float) -> dict[str, Any]:
        time.sleep(seconds)
        return {"slept": seconds}

    @Pid.responder
    def pid(self) -> dict[str, Any]:
        return {"pid": os.getpid()}

    @Exit.responder
    def exit(self, status: int) -> dict[str, Any]:
        sys.stdout.flush()
        os._exit(status)

    @Fail.responder
    def fail(self) -> dict[str, Any]:
        raise Oops("as declared")
