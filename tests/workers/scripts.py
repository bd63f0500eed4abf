"""Small misbehaving children, as command lines (each is ``sys.executable -c SOURCE``)."""

from __future__ import annotations

import sys
import textwrap

ROOT_SETUP = "import sys, os, time, signal\n"


def python(source: str) -> list[str]:
    """argv running ``source`` in a fresh interpreter."""
    return [sys.executable, "-c", ROOT_SETUP + textwrap.dedent(source)]


CRASH_AT_START = python(
    """
    sys.stderr.write("starting up\\n")
    sys.stderr.write("ImportError: no module named 'missing_dependency'\\n")
    sys.exit(3)
    """
)

NEVER_READY = python(
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(1)
    """
)

# Reads and answers nothing, ignores end of input and SIGTERM: only SIGKILL ends it.
STUBBORN = python(
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdin.close()
    while True:
        time.sleep(1)
    """
)


def worker(name: str = "EchoWorker", *extra: str) -> list[str]:
    """argv serving one of ``tests.workers.echo``' classes with the child runtime."""
    return [sys.executable, "-m", "juicectl.child", f"tests.workers.echo:{name}", *extra]

# Answers the readiness probe, then closes its stdin and keeps running (its stdout open).
CLOSES_STDIN = python(
    """
    from juicectl.juice import BoxParser, Box, answer_bytes, classify
    parser = BoxParser()
    while True:
        data = os.read(0, 65536)
        boxes = parser.feed(data)
        if boxes:
            os.write(1, answer_bytes(classify(boxes[0]).tag, Box(version="1")))
            break
        if not data:
            sys.exit(1)
    os.close(0)
    while True:
        time.sleep(1)
    """
)
