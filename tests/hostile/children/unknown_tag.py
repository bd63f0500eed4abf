"""Answers Echo, but first answers (and fails) tags the parent never asked."""

import sys

from _wire import answer, answer_plainly, behave_if_relaunched, command, error, negotiate, read_box

behave_if_relaunched()
negotiate()
while True:
    box = read_box()
    if box is None:
        sys.exit(0)
    if command(box) == "echo":
        answer("ffff0", ("Value", "nobody asked for this"))
        error("ffff1", "BOGUS", "nobody asked for this either")
    answer_plainly(box)
