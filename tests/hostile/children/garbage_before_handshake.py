"""Writes garbage on stdout before any handshake, then waits for the end of its input."""

from _wire import behave_if_relaunched, drain_stdin_then_exit, write

behave_if_relaunched()
write(b"Welcome to my shell!\n$ \x00\xff\xfe not juice at all\r\n\r\n")
drain_stdin_then_exit()
