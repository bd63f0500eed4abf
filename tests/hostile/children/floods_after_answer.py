"""Answers the first request, then reads nothing more and writes one header line of 256 MiB
with no end (bounded, so that a parent that kept it all unparsed fails its test rather than
its machine), then waits to be stopped."""

import time

from _wire import behave_if_relaunched, negotiate, read_box, write

behave_if_relaunched()
negotiate()
request = read_box() or {}
write(f"-Answer: {request.get('-ask', '1')}\r\nValue: first\r\n\r\n".encode())
chunk = b"junk " * 13_107  # 64 KiB, about
for _ in range(4096):  # stdin is never read again, and no CRLF comes
    write(chunk)
while True:
    time.sleep(1)
