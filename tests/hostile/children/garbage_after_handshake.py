"""Passes readiness, then answers the first request with garbage; waits for end of input."""

from _wire import behave_if_relaunched, drain_stdin_then_exit, negotiate, read_box, write

behave_if_relaunched()
negotiate()
read_box()
write(b"Traceback (most recent call last):\r\n  oops, printed on stdout\r\n\r\n")
drain_stdin_then_exit()
