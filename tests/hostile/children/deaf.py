"""Passes readiness, then never reads its stdin again: the parent's writes fill the pipe."""

import time

from _wire import behave_if_relaunched, negotiate

behave_if_relaunched()
negotiate()
while True:  # SIGTERM (the default) ends it
    time.sleep(1)
