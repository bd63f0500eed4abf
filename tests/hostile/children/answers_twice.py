"""Answers every Echo twice: once right, then again with a wrong value under the same tag."""

import sys

from _wire import answer, answer_plainly, behave_if_relaunched, command, negotiate, read_box

behave_if_relaunched()
negotiate()
while True:
    box = read_box()
    if box is None:
        sys.exit(0)
    answer_plainly(box)
    if command(box) == "echo":
        answer(box["-ask"], ("Value", "a second answer"))
