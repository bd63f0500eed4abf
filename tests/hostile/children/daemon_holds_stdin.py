"""Leaves a daemon (its own session) holding stdin, stdout and stderr open and reading
nothing, writes the daemon's pid to ``HOSTILE_MARKER`` + ``.daemon``, and reads nothing
itself: once this child is gone, a write to its full stdin has no reader and no end."""

import os
import time

from _wire import behave_if_relaunched, negotiate

behave_if_relaunched()
negotiate()
daemon = os.fork()
if daemon == 0:
    os.setsid()
    time.sleep(60)
    os._exit(0)
with open(os.environ["HOSTILE_MARKER"] + ".daemon", "w") as marker:
    marker.write(str(daemon))
time.sleep(60)
