"""A thread that holds the read role and, inside a callback of its own read, writes to a full
pipe. It does not wait (``WouldWait``: a helper thread finishes the write) unless it must
(``hold=True``, no helper thread): then it reads the child's output while it waits for room,
keeps what it reads for the read it interrupted (parsed in order once the callback returns),
up to ``HOLD_LIMIT`` bytes, and leaves an end of file it meets for that read to meet again.

The ``ReadRole`` is driven alone here, over two pipes the test holds: room comes only once
the test has seen the held chunks arrive, so a holder that did not read while it waited would
fail the bounded waits (nothing is timed).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import structlog

from juicectl import _reading as reading_module
from juicectl._pipe import WouldWait
from juicectl._reading import ReadRole
from tests.callers.test_who_reads import wait_until

pytestmark = pytest.mark.timeout(60)


@dataclass
class Held:
    """The role serving the "child's output"; its first chunk's feed writes to a full pipe."""

    role: ReadRole
    output_w: int
    input_r: int
    fed: list[bytes] = field(default_factory=list)
    outcome: list[object] = field(default_factory=list)
    raised: list[BaseException] = field(default_factory=list)  # by its wait for room
    thread: threading.Thread | None = None

    def drain_input(self) -> None:
        os.set_blocking(self.input_r, False)
        with contextlib.suppress(BlockingIOError):
            while os.read(self.input_r, 65536):
                pass


def _full_pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"f" * 65536)
    return read_end, write_end


@contextlib.contextmanager
def _output_on(descriptor_zero: bool) -> Iterator[tuple[int, int]]:
    """The child's output pipe, its read end on descriptor 0 if asked (a host whose stdin is
    closed)."""
    read_end, write_end = os.pipe()
    saved = -1
    if descriptor_zero:
        saved = os.dup(0)
        os.dup2(read_end, 0)
        os.close(read_end)
        read_end = 0
    try:
        yield read_end, write_end
    finally:
        if saved >= 0:
            os.dup2(saved, 0)
            os.close(saved)
        elif read_end >= 0:
            with contextlib.suppress(OSError):
                os.close(read_end)


@contextlib.contextmanager
def held_role(descriptor_zero: bool = False, *, hold: bool = True) -> Iterator[Held]:
    input_r, input_w = _full_pipe()
    with _output_on(descriptor_zero) as (output_r, output_w):
        held: Held

        def feed(data: bytes) -> None:
            held.fed.append(data)
            if data == b"first":
                try:  # on the thread reading: it holds the role
                    held.role.wait_for_room(input_w, hold=hold)
                except (OSError, WouldWait) as error:
                    held.raised.append(error)

        role = ReadRole(
            feed, busy_poll=0.0, log=structlog.get_logger("test"), outstanding=lambda: 1
        )
        held = Held(role, output_w, input_r)

        def serve() -> None:
            try:
                held.outcome.append(role.serve(output_r))
            except BaseException as error:
                held.outcome.append(error)

        held.thread = threading.Thread(target=serve, daemon=True)
        held.thread.start()
        try:
            yield held
        finally:
            held.drain_input()
            with contextlib.suppress(OSError):
                os.close(output_w)
            held.thread.join(10)
            for fd in (input_r, input_w):
                os.close(fd)


@pytest.mark.parametrize("descriptor_zero", [False, True], ids=["fd", "fd0"])
@pytest.mark.parametrize("chunks", [[b"second"], [b"second", b"third"]], ids=["one", "two"])
def test_what_the_holder_reads_while_it_waits_is_fed_after_its_read_in_order(
    chunks: list[bytes], descriptor_zero: bool
) -> None:
    with held_role(descriptor_zero) as held:
        os.write(held.output_w, b"first")
        wait_until(lambda: held.fed == [b"first"])
        for count, chunk in enumerate(chunks, 1):
            os.write(held.output_w, chunk)
            # Read while it waits, and kept: not fed yet, out of order.
            wait_until(lambda count=count: len(held.role._held) == count)
        assert held.fed == [b"first"]
        held.drain_input()
        wait_until(lambda: len(held.fed) == 2)
        assert held.fed == [b"first", b"".join(chunks)]
        os.close(held.output_w)
        assert held.thread is not None
        held.thread.join(10)
        assert held.outcome == [None]  # end of file: serve() returns


def test_end_of_file_met_while_holding_is_left_for_the_interrupted_read() -> None:
    with held_role() as held:
        os.write(held.output_w, b"first")
        wait_until(lambda: held.fed == [b"first"])
        os.write(held.output_w, b"second")
        wait_until(lambda: len(held.role._held) == 1)
        os.close(held.output_w)  # end of file while the holder still waits for room
        held.drain_input()
        assert held.thread is not None
        held.thread.join(10)
        assert not held.thread.is_alive()
        assert held.fed == [b"first", b"second", b""]
        assert held.outcome == [None]


def test_without_hold_the_holder_does_not_wait_and_reads_nothing() -> None:
    # The connection's writers: the write goes on in a helper thread, and this thread goes
    # back to its read, which parses what comes next in order.
    with held_role(hold=False) as held:
        os.write(held.output_w, b"first")
        wait_until(lambda: len(held.raised) == 1)
        assert isinstance(held.raised[0], WouldWait)
        os.write(held.output_w, b"second")
        wait_until(lambda: held.fed == [b"first", b"second"])
        assert held.role._held == []


def test_the_holder_keeps_at_most_hold_limit_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # A child that writes on and on while its input stays full: past the limit the wait
    # raises (the connection's write fails, ending the connection), and what was kept goes
    # to the interrupted read, as the rest would have.
    monkeypatch.setattr(reading_module, "HOLD_LIMIT", 10)
    with held_role() as held:
        os.write(held.output_w, b"first")
        wait_until(lambda: held.fed == [b"first"])
        os.write(held.output_w, b"12345678")
        wait_until(lambda: len(held.role._held) == 1)
        assert held.raised == []
        os.write(held.output_w, b"abcd")
        wait_until(lambda: len(held.raised) == 1)
        assert isinstance(held.raised[0], OSError)
        assert "wrote 12 bytes while not reading its input" in str(held.raised[0])
        wait_until(lambda: len(held.fed) == 2)
        assert held.fed == [b"first", b"12345678abcd"]
        assert held.role._held == []
