"""Passes readiness, then floods the parent with Negotiate requests and never reads a reply."""

from _wire import behave_if_relaunched, box_bytes, negotiate, write

behave_if_relaunched()
negotiate()
burst = b"".join(
    box_bytes(("-Command", "Negotiate"), ("-Ask", f"n{n}"), ("Versions", "1")) for n in range(1000)
)
while True:  # until stopped
    write(burst)
