"""Raw Juice bytes for the hostile children: no juicectl import, they speak for themselves.

Each child is a plain script run as ``python tests/hostile/children/NAME.py``; this module
sits next to them (so it is importable as ``_wire``) and gives them just enough of the
protocol to pass readiness (answer ``Negotiate``) and to misbehave precisely.

A child launched with ``HOSTILE_MARKER`` set writes its pid to that file the first time; a
child that finds the file already there is a relaunch and behaves (a plain echo server), so
a test can show the same controller is usable again with the same command line.
"""

from __future__ import annotations

import os
import sys

_stdin = sys.stdin.buffer


def read_box() -> dict[str, str] | None:
    """Read one box from stdin: lower-cased wire keys -> values; None at end of input."""
    box: dict[str, str] = {}
    last = ""
    while True:
        line = _stdin.readline()
        if not line:
            return None
        if line == b"\r\n":
            return box
        line = line[:-2] if line.endswith(b"\r\n") else line.rstrip(b"\n")
        if line.startswith(b" "):
            box[last] += "\r\n" + line[1:].decode("utf-8")
        else:
            key, _, value = line.partition(b": ")
            last = key.decode("utf-8").lower()
            box[last] = value.decode("utf-8")


def write(data: bytes) -> None:
    """Write all of ``data`` to stdout (fd 1), unbuffered."""
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def box_bytes(*fields: tuple[str, str]) -> bytes:
    """The wire bytes of a box with these (key, value) fields; CRLF become continuations."""
    lines = [
        f"{key}: {value.replace(chr(13) + chr(10), chr(13) + chr(10) + ' ')}\r\n"
        for key, value in fields
    ]
    return ("".join(lines) + "\r\n").encode("utf-8")


def answer(tag: str, *fields: tuple[str, str]) -> None:
    """Answer request ``tag``."""
    write(box_bytes(*fields, ("-Answer", tag)))


def error(tag: str, code: str, description: str) -> None:
    """Answer request ``tag`` with an error."""
    write(box_bytes(("-Error", tag), ("-Error-Code", code), ("-Error-Description", description)))


def command(box: dict[str, str]) -> str:
    """The request's command name, lower-cased ("" if the box is not a request)."""
    return box.get("-command", "").lower()


def negotiate() -> None:
    """Read the parent's first request (its readiness probe, Negotiate) and answer it."""
    box = read_box()
    if box is None:
        sys.exit(0)
    if command(box) != "negotiate":
        sys.exit(f"expected Negotiate first, got {box!r}")
    answer(box["-ask"], ("Version", "1"))


def answer_plainly(box: dict[str, str]) -> bool:
    """Answer Negotiate, Echo and Shutdown as a good child would; False for anything else.

    After Shutdown the child exits (status 0).
    """
    name, tag = command(box), box.get("-ask")
    if tag is None:
        return name in ("negotiate", "echo", "shutdown")
    if name == "negotiate":
        answer(tag, ("Version", "1"))
    elif name == "echo":
        answer(tag, ("Value", box.get("value", "")))
    elif name == "shutdown":
        answer(tag)
        sys.exit(0)
    else:
        return False
    return True


def serve_plainly() -> None:
    """A well-behaved echo server until end of input or Shutdown."""
    while True:
        box = read_box()
        if box is None:
            sys.exit(0)
        if not answer_plainly(box) and "-ask" in box:
            error(box["-ask"], "UNHANDLED", "Unhandled Remote System Exception ")


def behave_if_relaunched() -> None:
    """Serve plainly if this is a relaunch (the marker exists); else leave the marker."""
    marker = os.environ.get("HOSTILE_MARKER")
    if not marker:
        return
    if os.path.exists(marker):
        serve_plainly()
    with open(marker, "w") as file:
        file.write(str(os.getpid()))


def drain_stdin_then_exit() -> None:
    """Read (and ignore) stdin until the parent closes it, then exit."""
    while _stdin.read(65536):
        pass
    sys.exit(0)
