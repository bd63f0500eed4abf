"""Writing to a pipe: the one write loop (``write_all``), and the parent's transport into a
child (``PipeTransport``): non-blocking, waiting for room as its writer decides, never closed
under a write."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator

import pytest

from juicectl._pipe import PipeTransport, wait_writable, write_all
from juicectl.child._io import OutputStream
from tests.main_thread import Interrupted, interrupted_in

DATA = bytes(range(256)) * 1000  # 256,000 bytes: about four times what a pipe holds


class Drain:
    """A thread that reads a pipe's read end to its end, keeping what it read."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while chunk := os.read(self.fd, 65536):
            self.chunks.append(chunk)
        os.close(self.fd)

    def result(self) -> bytes:
        self.thread.join(10)
        assert not self.thread.is_alive()
        return b"".join(self.chunks)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):
            os.close(fd)


def test_write_all_on_a_blocking_pipe_writes_everything(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    drain = Drain(os.dup(read_fd))
    os.close(read_fd)
    write_all(write_fd, DATA)
    os.close(write_fd)
    assert drain.result() == DATA


def test_write_all_on_a_full_non_blocking_pipe_waits_for_room_as_told(
    pipe: tuple[int, int],
) -> None:
    read_fd, write_fd = pipe
    os.set_blocking(write_fd, False)
    received: list[bytes] = []
    waits: list[int] = []

    def wait_for_room(fd: int) -> None:
        # What the connection does while it waits: read the other side, here the pipe itself.
        waits.append(fd)
        received.append(os.read(read_fd, 65536))

    write_all(write_fd, DATA, wait_for_room)
    os.set_blocking(read_fd, False)
    try:
        while chunk := os.read(read_fd, 65536):
            received.append(chunk)
    except BlockingIOError:
        pass
    assert b"".join(received) == DATA
    assert waits and set(waits) == {write_fd}


def test_write_all_to_a_pipe_nobody_reads_raises_broken_pipe(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.close(read_fd)
    with pytest.raises(BrokenPipeError):
        write_all(write_fd, b"nobody reads this")


def test_a_transport_makes_its_pipe_non_blocking_and_writes_everything(
    pipe: tuple[int, int],
) -> None:
    read_fd, write_fd = pipe
    transport = PipeTransport(write_fd)
    assert not os.get_blocking(write_fd)
    drain = Drain(os.dup(read_fd))
    os.close(read_fd)
    transport.write(DATA)  # the default wait: sleep until the pipe has room
    transport.close()
    assert drain.result() == DATA


def test_a_closed_transport_refuses_writes_and_closes_once() -> None:
    read_fd, write_fd = os.pipe()
    transport = PipeTransport(write_fd)
    transport.close()
    transport.close()
    assert transport.closed
    with pytest.raises(BrokenPipeError, match="the child's input is closed"):
        transport.write(b"late", lambda fd: None)
    with pytest.raises(OSError):
        os.fstat(write_fd)  # closed
    os.close(read_fd)


def test_close_during_a_write_leaves_the_descriptor_to_the_writer() -> None:
    # Closed under a write, the descriptor's number could be reused by the next open(), and
    # the rest of the write would land in whatever file got it.
    read_fd, write_fd = os.pipe()
    transport = PipeTransport(write_fd)
    still_open: list[bool] = []

    def wait_for_room(fd: int) -> None:
        transport.close()  # the owner closes the child's input meanwhile
        still_open.append(os.fstat(fd) is not None)
        os.read(read_fd, 65536)

    transport.write(DATA, wait_for_room)
    assert still_open and all(still_open)
    with pytest.raises(OSError):
        os.fstat(write_fd)  # closed by the writer, once done
    os.close(read_fd)


def test_a_transport_over_a_file_object_closes_it_through_the_object() -> None:
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "wb", buffering=0)
    transport = PipeTransport(stream)
    drain = Drain(read_fd)
    transport.write(b"through the object")
    transport.close()
    assert stream.closed  # so it will never close the number again later
    assert drain.result() == b"through the object"


def test_the_child_writes_its_answers_whole_with_the_same_loop() -> None:
    read_fd, write_fd = os.pipe()
    drain = Drain(read_fd)
    output = OutputStream(write_fd)
    output.write(DATA)
    output.close()
    assert drain.result() == DATA


def _fill(write_fd: int) -> int:
    """Write into a non-blocking pipe until it is full; return how many bytes it took."""
    taken = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            taken += os.write(write_fd, b"f" * 65536)
    return taken


def test_wait_writable_returns_only_once_the_pipe_has_room(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.set_blocking(write_fd, False)
    _fill(write_fd)
    waiting = threading.Thread(target=wait_writable, args=(write_fd,), daemon=True)
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive(), "wait_writable returned while the pipe was full"
    os.set_blocking(read_fd, False)
    with contextlib.suppress(BlockingIOError):
        while os.read(read_fd, 65536):
            pass
    waiting.join(10)
    assert not waiting.is_alive()


def test_write_all_waits_again_when_woken_without_room(pipe: tuple[int, int]) -> None:
    # A wait for room may return before there is any (the connection's reads say "may have
    # room"): the next write then meets the full pipe again, and the loop waits again.
    read_fd, write_fd = pipe
    os.set_blocking(write_fd, False)
    filled = _fill(write_fd)
    waits = [0]
    drains: list[Drain] = []

    def wait_for_room(fd: int) -> None:
        waits[0] += 1
        if waits[0] == 2:  # the first wait returns at once, with the pipe still full
            drains.append(Drain(os.dup(read_fd)))
        if waits[0] >= 2:
            wait_writable(fd)

    write_all(write_fd, DATA, wait_for_room)
    os.close(write_fd)
    assert waits[0] >= 2
    assert drains[0].result() == b"f" * filled + DATA


def test_a_closed_transport_says_its_pipe_is_broken_and_why() -> None:
    read_fd, write_fd = os.pipe()
    transport = PipeTransport(write_fd)
    transport.close()
    with pytest.raises(BrokenPipeError) as raised:
        transport.write(b"late")
    assert raised.value.errno == errno.EPIPE
    assert str(raised.value) == "[Errno 32] the child's input is closed"
    os.close(read_fd)


def test_close_waits_for_every_write_in_progress() -> None:
    # Two writers wait for room in a full pipe; close() comes meanwhile. The descriptor must
    # stay open until the last of them is done, not the first.
    read_fd, write_fd = os.pipe()
    transport = PipeTransport(write_fd)
    filled = _fill(write_fd)
    entered = {name: threading.Event() for name in "ab"}
    release = {name: threading.Event() for name in "ab"}
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        def wait_for_room(fd: int) -> None:
            entered[name].set()
            assert release[name].wait(10)
            wait_writable(fd)

        try:
            transport.write(name.encode() * 100_000, wait_for_room)
        except BaseException as error:
            errors.append(error)

    threads = {name: threading.Thread(target=writer, args=(name,), daemon=True) for name in "ab"}
    for name, thread in threads.items():
        thread.start()
        assert entered[name].wait(10)
    transport.close()
    drain = Drain(read_fd)
    release["a"].set()
    threads["a"].join(10)
    release["b"].set()
    threads["b"].join(10)
    assert errors == []
    data = drain.result()  # ends: the last writer closed the descriptor
    assert len(data) == filled + 200_000
    assert data.count(b"a") == 100_000 and data.count(b"b") == 100_000


def test_a_wait_for_room_on_the_main_thread_lets_ctrl_c_raise(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.set_blocking(write_fd, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_fd, DATA)  # full
    drain: list[Drain] = []
    with pytest.raises(Interrupted), \
            interrupted_in("wait_writable", lambda: drain.append(Drain(read_fd))) as seen:
        write_all(write_fd, DATA)
    assert seen.raised_before_release


def test_has_room_while_the_pipe_has_room_and_its_reader_is_there() -> None:
    read_fd, write_fd = os.pipe()
    transport = PipeTransport(write_fd)
    try:
        assert transport.has_room()
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(write_fd, DATA)  # non-blocking now: until the pipe is full
        assert not transport.has_room()
        os.read(read_fd, 65536)
        assert transport.has_room()
        os.close(read_fd)  # nobody reads it any more: a write would break
        read_fd = -1
        assert not transport.has_room()
        transport.close()
        assert not transport.has_room()
    finally:
        transport.close()
        if read_fd >= 0:
            os.close(read_fd)
