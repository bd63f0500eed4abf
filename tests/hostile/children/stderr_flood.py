"""Writes 50 MB on stderr (from a thread) while answering Echo and Progress requests.

``Progress`` is answered with ``Written: N``, the bytes written to stderr so far.
"""

import os
import sys
import threading

from _wire import answer, answer_plainly, behave_if_relaunched, command, negotiate, read_box

TOTAL = int(os.environ.get("HOSTILE_FLOOD_BYTES", str(50 * 10**6)))
LINE = b"E" * 8191 + b"\n"
written = 0


def flood() -> None:
    global written
    while written < TOTAL:
        os.write(2, LINE)  # a blocking pipe: waits when the parent does not read
        written += len(LINE)
    os.write(2, b"flood done\n")


behave_if_relaunched()
negotiate()
threading.Thread(target=flood, daemon=True).start()
while True:
    box = read_box()
    if box is None:
        sys.exit(0)
    if command(box) == "progress":
        answer(box["-ask"], ("Written", str(written)))
    else:
        answer_plainly(box)
