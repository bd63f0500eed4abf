"""Answers Echo, but ignores Shutdown, the end of its input and SIGTERM: only SIGKILL works."""

import signal
import time

from _wire import answer_plainly, behave_if_relaunched, command, negotiate, read_box

behave_if_relaunched()
signal.signal(signal.SIGTERM, signal.SIG_IGN)
negotiate()
while True:
    box = read_box()
    if box is None:
        break  # the parent closed our stdin: carry on regardless
    if command(box) != "shutdown":
        answer_plainly(box)
while True:
    time.sleep(1)
