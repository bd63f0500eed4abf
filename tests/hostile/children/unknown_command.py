"""On the first Echo, sends the parent a command it has no responder for; reports the reply.

With ``HOSTILE_ASK=0`` the command carries no -Ask (it wants no answer).
"""

import os
import sys

from _wire import answer_plainly, behave_if_relaunched, box_bytes, negotiate, read_box, write

behave_if_relaunched()
negotiate()
request = read_box()
if request is None:
    sys.exit(0)
fields = [("-Command", "Frobnicate"), ("Knob", "11")]
if os.environ.get("HOSTILE_ASK", "1") == "1":
    fields.append(("-Ask", "c1"))
write(box_bytes(*fields))
while True:
    box = read_box()
    if box is None:
        sys.exit(0)
    if "-error" in box or "-answer" in box:
        sys.stderr.write(f"the parent replied: {sorted(box.items())}\n")
        sys.stderr.flush()
    else:
        answer_plainly(box)
