"""Answers the first request with a -Length of 100 GB, then streams zeros until stopped."""

from _wire import behave_if_relaunched, negotiate, read_box, write

behave_if_relaunched()
negotiate()
request = read_box() or {}
write(f"-Answer: {request.get('-ask', '1')}\r\n-Length: {100 * 10**9}\r\n\r\n".encode())
chunk = bytes(1 << 20)
while True:  # until a signal ends it (or the parent's end of the pipe closes)
    write(chunk)
