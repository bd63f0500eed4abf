"""Answers the first request with a header line that never ends, until stopped."""

from _wire import behave_if_relaunched, negotiate, read_box, write

behave_if_relaunched()
negotiate()
request = read_box() or {}
write(f"-Answer: {request.get('-ask', '1')}\r\nValue: ".encode())
chunk = b"a" * (1 << 20)
while True:  # no CRLF, ever
    write(chunk)
