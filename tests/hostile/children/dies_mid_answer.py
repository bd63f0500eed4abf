"""Passes readiness, then dies (SIGKILL, as the OOM killer would) half-way through an answer."""

import os
import signal

from _wire import behave_if_relaunched, negotiate, read_box, write

behave_if_relaunched()
negotiate()
request = read_box() or {}
write(f"-Answer: {request.get('-ask', '1')}\r\nValue: the first half of".encode())
os.kill(os.getpid(), signal.SIGKILL)
