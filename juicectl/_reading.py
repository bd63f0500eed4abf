"""Who reads the child's stdout: the reader thread, or a thread waiting on the connection.

Theory of operation
-------------------

Reading the child's stdout is a *role* that one thread holds at a time. Whoever holds it reads
(64 KiB at a time), hands the bytes to the connection (``feed``: parse, settle the futures of
the answers, dispatch the child's requests), and reads again.

* The **reader thread** (``serve``, run by the child's owner) holds it from the start and
  whenever nobody else reads: for answers nobody waits for, futures with callbacks
  (``juicectl.aio``), requests from the child, end of file.
* A **caller** that waits while nobody reads takes it. A caller in ``get()`` reads its own
  answer: a request then costs no thread hand-off at all (the reader waking, then the caller,
  each a context switch and a GIL transfer). A writer that meets a full pipe reads while it
  waits for room (see "No stall" below).
* While callers read, the reader thread is **parked**. It parks only after serving a caller that
  waited behind it, with nobody waiting now, and decides so under the same lock as it parks. It
  takes the role back at once when asked: a thread waits without reading (another holds the
  role), a future gets callbacks, a caller met end of file or bad bytes (the reader thread
  handles both), the connection is lost; and otherwise once nobody has read for ``PARK``.
  While callers keep taking the role, the reader thread stays parked: waking it to read an
  answer a caller would have read anyway costs two cold wake-ups (the reader's, then the
  caller's on its future) instead of one, most of a request's CPU when work is slow. Each look
  it takes meanwhile is a wake-up too, so while callers keep reading it looks twice as late
  each time, up to ``LOOK_LIMIT`` parks apart: an answer nobody waits for, a request from the
  child or end of file is read within ``LOOK_LIMIT + 1`` parks (90 ms) of the last caller's
  read.

A caller's read never outlives its wait: a timeout or a lost connection wakes it through a pipe
of the role's own (without one, for want of file descriptors, callers never read and the reader
thread reads everything).

A caller reading may poll the pipe for up to ``busy_poll`` seconds before it sleeps on it, while
that brings answers sooner (``juicectl._busy_poll``): on an idle machine a sleeper is woken tens
of microseconds late. Never right after a read that may have woken other threads waiting on
this connection: a spin holds the GIL they need. And only while the answer it waits for is the
only one outstanding: with more in flight, answers keep coming without a spin, and a sleep lets
them gather into fewer, larger reads, where a spin takes a CPU from the child and reads them one
by one (64 in flight on two cores: about 1.3x the requests a second with no spin).

No stall, by construction
-------------------------

A thread that writes to the child while nobody reads the child's output can wait for ever: the
child blocks writing its answers into a full pipe and stops reading its input, and the writer
blocks on the full input. So whatever writes and meets a full pipe waits in
``wait_for_room``, which makes sure the output is read meanwhile:

* the role is free: the writer takes it and reads while it waits for room;
* another thread holds it (the reader thread, or a caller reading): that one reads, and the
  writer counts as a watcher, so the reader thread neither parks while it waits nor stays parked
  once a caller lets go of the role;
* the writer holds the role itself (a future's callback, run while this thread reads, sends a
  request): it does not wait at all. ``wait_for_room`` refuses (``WouldWait``), and a helper
  thread writes the rest, as for a caller that must not block: this thread goes back to the
  read it interrupted, which parses what comes next in order. Only where no thread can be
  started (the interpreter is ending) does it wait itself, reading meanwhile and keeping what
  it reads for that read (``hold=True``), up to ``HOLD_LIMIT`` bytes: a child that writes more
  than that while it does not read its input ends the connection, since nothing can parse it
  until the write is done.

The states (who holds the role), and the triggers that move it (``TRANSITIONS``, the data the
code moves by):

| state | who reads |
|---|---|
| free | nobody: the reader thread is parked, a waiting thread may take the role |
| reader | the reader thread (from the start, and whenever it takes the role back) |
| caller | a thread waiting on the connection: a caller for its answer, a writer for room |
| ended | nobody, ever again: end of file, or bytes that broke the protocol |

| state | trigger | next state | fired by: when |
|---|---|---|---|
| reader | park | free | the reader thread: it served a caller that waited behind it (1) |
| free | resume | reader | the parked reader thread: asked to (2), or nobody read for ``PARK`` (3) |
| free | take | caller | a caller in ``get()``, or a writer at a full pipe: callers may read |
| caller | leave | free | that thread: done waiting, or it met end of file or bad bytes |
| reader | end | ended | the reader thread: end of file, or a protocol error |

(1) since the last park, with no thread waiting without reading now, while callers may read.
(2) ``reader_wanted``: a thread waits without reading, a caller let go of the role while one
does, callers may read no more, or the connection is lost.
(3) as seen at its next look: at the end of the park, or, while callers keep reading, up to
``LOOK_LIMIT`` parks after the previous look.

The flags beside the state, all under the role's lock: ``callers_waited`` (a thread waited
behind the holder since the last park), ``reader_wanted`` (the parked reader thread must take
the role back now), ``callers_may_read`` (false for good once a caller met end of file or bad
bytes, once the connection is lost, or without a wake pipe: from then on only the reader thread
reads), ``watchers`` (threads waiting without reading: futures waited on or with callbacks,
writers waiting for room behind another reader). Holding the role's lock, a thread never takes
the connection's locks, and the reverse: no order to keep.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

from juicectl._busy_poll import BusyPoll
from juicectl._future import ReplyFuture, check_wait
from juicectl._main_thread import MAIN_THREAD_SLICE, on_main_thread, poll_slice
from juicectl._pipe import WouldWait
from juicectl.juice import ProtocolError

__all__ = [
    "LOOK_LIMIT",
    "PARK",
    "READ_SIZE",
    "TRANSITIONS",
    "ReadRole",
    "RequestFuture",
    "Role",
    "Trigger",
]

# Bytes asked of the child's stdout per read: a whole burst of answers in one system call.
READ_SIZE = 1 << 16
#: The most bytes a thread keeps unparsed while it waits for room inside a callback of its
#: own read (``ReadRole.wait_for_room`` with ``hold=True``): the parent's memory stays bounded
#: whatever the child writes meanwhile.
HOLD_LIMIT = 16 << 20
#: The longest a writer waiting for room sleeps before it looks whether the connection has
#: ended (seconds): a child gone, whose input a grandchild holds open and never reads, gives
#: its writers no other sign.
WRITER_LOOK = 0.1
# How long the parked reader thread leaves the pipe to callers who read their own answers once
# nobody reads, before it reads again itself (seconds).
PARK = 0.01
# The longest the parked reader thread sleeps between two looks while callers keep reading, in
# parks: an answer nobody waits for is read within LOOK_LIMIT + 1 parks of the last caller's
# read.
LOOK_LIMIT = 8


class Role(enum.Enum):
    """Who holds the read role (see the module docstring)."""

    FREE = "free"
    READER = "reader"
    CALLER = "caller"
    ENDED = "ended"

    # A member is its own identity: hashed as an object (in C), not by name (in Python, four
    # times slower), since the role moves twice per request a caller reads.
    __hash__ = object.__hash__


class Trigger(enum.Enum):
    """What moves the read role from one holder to the next."""

    PARK = "park"
    RESUME = "resume"
    TAKE = "take"
    LEAVE = "leave"
    END = "end"

    __hash__ = object.__hash__  # as Role's


#: (state, trigger) -> next state. Any other pair is a bug, and raises.
TRANSITIONS: dict[tuple[Role, Trigger], Role] = {
    (Role.READER, Trigger.PARK): Role.FREE,
    (Role.FREE, Trigger.RESUME): Role.READER,
    (Role.FREE, Trigger.TAKE): Role.CALLER,
    (Role.CALLER, Trigger.LEAVE): Role.FREE,
    (Role.READER, Trigger.END): Role.ENDED,
}

Failure = tuple[ProtocolError, bytes]
"""A protocol error, and the start of the read that broke the protocol."""


_reply_get = ReplyFuture.get


class RequestFuture(ReplyFuture[dict[str, Any]]):
    """A request's future: a caller waiting in ``get()`` reads the answer itself when nobody
    else reads, and one with callbacks makes sure the reader thread reads.

    Made with no arguments (as ``map()`` and the like make theirs); its connection sets
    ``reading`` at once. No ``__init__`` of its own: one is made for every request.
    """

    #: Who reads the answer (its connection's), or None for a future made by ``map()`` and
    #: the like, which only waits on the future it maps.
    reading: ReadRole | None = None
    #: Counted among the role's watchers (under the role's lock).
    watched = False
    #: Whether the request has a deadline among its connection's (set by the connection).
    timed = False
    #: The request's place in the order of writes to the child (its connection sets it as it
    #: queues the bytes; None until then).
    seq: int | None = None
    #: An object of the caller's, given back in ``Connection.outstanding()`` (a pool keeps
    #: its own record of the request here).
    context: Any = None
    #: The timeout its caller gave (seconds), named by its ``RequestTimeout`` where the
    #: connection was given less: what was left of it (a request a pool held first).
    stated_timeout: float | None = None

    def get(self, *, timeout: float | None = None) -> Any:
        """The response fields (or raise); wait up to ``timeout`` seconds (None: forever).

        Raises:
            pykka.Timeout: no answer within ``timeout``.
            TypeError, ValueError: ``timeout`` is not None or a finite number >= 0.
        """
        reading = self.reading
        if reading is not None and not self.done() and not self.has_get_hook():
            if timeout is not None:
                check_wait(timeout)  # before the read role is taken
            try:
                # ReplyFuture.get, without super(), for the time left after reading.
                return _reply_get(self, timeout=reading.wait(self, timeout))
            except pykka.Timeout:
                raise pykka.Timeout(f"{timeout} seconds") from None  # the caller's, not 0.0
        return _reply_get(self, timeout=timeout)

    def add_done_callback(self, callback: Callable[[ReplyFuture[dict[str, Any]]], None]) -> None:
        """Call ``callback(future)`` once settled (at once if it already is)."""
        reading = self.reading
        if reading is not None and not self.done():
            reading.watch(self)
        super().add_done_callback(callback)

    def lost(self, reason: BaseException) -> None:
        """The connection ended with this request outstanding (``Connection.connection_lost``,
        after ``lost_requests`` is set): fail with ``reason``. A subclass whose owner decides
        what becomes of a lost request (a pool that sends it again) keeps it open instead."""
        self.try_set_exception(reason)

    def notify(self, callback: Callable[[ReplyFuture[dict[str, Any]]], None]) -> None:
        """Call ``callback(future)`` once settled, like ``add_done_callback``, without making
        the reader thread read for it: for an owner that counts requests while its callers
        wait in ``get()``, which reads. An answer nobody waits for is still read, within
        ``LOOK_LIMIT + 1`` parks of the last caller's read."""
        ReplyFuture.add_done_callback(self, callback)


class ReadRole:
    """Who reads one child's stdout, and how each reads (see the module docstring).

    Args:
        feed: takes every chunk read, in order (``b""`` at end of file); raises
            ``ProtocolError`` if the bytes break the protocol.
        busy_poll: how long a caller reading may poll the pipe before it sleeps on it.
        log: where to log (the connection's bound logger).
        outstanding: how many requests are in flight now; a caller spins only while it is 1.
    """

    def __init__(
        self,
        feed: Callable[[bytes], None],
        *,
        busy_poll: float,
        log: Any,
        outstanding: Callable[[], int],
    ) -> None:
        self._feed = feed
        self._outstanding = outstanding
        self._log = log
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        #: Who reads now. Until ``serve`` runs, the role is the reader thread's: callers wait.
        self.role = Role.READER
        self._holder: int | None = None  # the thread holding READER or CALLER, once known
        self._fd = -1
        self._wake_r = -1
        self._wake_w = -1  # written to wake a caller that reads (poll) when its future settles
        #: How a reading caller waits on the pipe; used only by the thread holding CALLER.
        self.busy_poll = BusyPoll(busy_poll)
        self._poll: Callable[[float | None], list[tuple[int, int]]] | None = None
        #: Threads waiting on the connection without reading (see the module docstring).
        self.watchers = 0
        self._callers_waited = False
        self._reader_wanted = False
        # When the role was last let go (or the reader thread parked): the parked reader thread
        # takes it back once nobody has read for PARK since.
        self._read_at = 0.0
        self._callers_may_read = True
        self._caller_failure: Failure | None = None
        self._ended = False  # end() was called: writers waiting for room give up
        # Read by the holder while it waited for room inside a callback of its own read, for
        # that read to parse once the callback returns (only the holder touches it).
        self._held: list[bytes] = []
        self._held_size = 0

    def _fire(self, trigger: Trigger) -> None:
        """Move the role by ``TRANSITIONS`` (called with the lock held)."""
        role = TRANSITIONS.get((self.role, trigger))
        if role is None:
            raise RuntimeError(f"who reads: {trigger.value!r} cannot happen in {self.role.value!r}")
        self.role = role
        self._holder = threading.get_ident() if role is Role.READER or role is Role.CALLER else None

    # --- the reader thread -----------------------------------------------------------------

    def serve(self, fd: int, stop_fd: int = -1) -> Failure | None:
        """Read ``fd`` until end of file (returns None) or bytes that break the protocol
        (returns the error and the start of that read): the reader thread's loop. Callers
        read ``fd`` too, one at a time, while this thread is parked.

        ``stop_fd``: once it is readable or hung up (its write end closed), stop reading as
        if at end of file: the owner gives up a pipe that something else holds open (a
        grandchild that left with the child's stdout)."""
        try:
            wake_r, wake_w = os.pipe()
        except OSError as error:
            # Out of file descriptors: no caller can be woken while it reads, so none reads;
            # this thread reads everything, as if callers never waited alone.
            self._log.warning("callers_do_not_read", error=str(error))
            wake_r = wake_w = -1
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if wake_r >= 0:
            os.set_blocking(wake_w, False)
            poller.register(wake_r, select.POLLIN)
        with self._lock:
            self._fd, self._wake_r, self._wake_w, self._poll = fd, wake_r, wake_w, poller.poll
            self._holder = threading.get_ident()
            if wake_r < 0:
                self._callers_may_read = False
        try:
            return self._read_until_eof(fd, stop_fd)
        finally:
            with self._lock:
                self._fire(Trigger.END)
                self._fd = self._wake_r = self._wake_w = -1
                self._poll = None
            if wake_r >= 0:
                os.close(wake_r)
                os.close(wake_w)

    def _read_until_eof(self, fd: int, stop_fd: int) -> Failure | None:
        stopped = None
        if stop_fd >= 0:
            # Waited on before each read, so that the owner can end a read nobody ends.
            watch = select.poll()
            watch.register(fd, select.POLLIN)
            watch.register(stop_fd, select.POLLIN)
            stopped = watch.poll
        while True:
            with self._lock:
                # Decided under the same lock as the parking itself, so that a caller who
                # starts waiting meanwhile is either counted here or finds the role free.
                if self._callers_waited and not self.watchers and self._callers_may_read:
                    self._fire(Trigger.PARK)
                    self._callers_waited = False
                    self._read_at = time.monotonic()
                    self._stay_parked()
                    self._fire(Trigger.RESUME)
                    self._reader_wanted = False
                if self._caller_failure is not None:
                    return self._caller_failure
            if stopped is not None and any(ready == stop_fd for ready, _ in stopped()):
                return None
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:
                data = b""
            try:
                self._feed_all(data)
            except ProtocolError as error:
                return error, data[:80]
            if not data:
                return None

    def _stay_parked(self) -> None:
        # Called with the lock held, just parked: return once the reader thread must take the
        # role back, asked to or because nobody has read for PARK. Each look is a wake-up of
        # this thread, hundreds of microseconds of CPU after milliseconds asleep: while callers
        # keep reading (one holds the role, or one came and went since the last look) the
        # looks come twice as far apart each time, up to LOOK_LIMIT parks.
        look = PARK
        seen = self._read_at
        while True:
            if self.role is Role.FREE:
                if self._reader_wanted:
                    return
                left = self._read_at + PARK - time.monotonic()
                if left <= 0:
                    return  # nobody has read for PARK
                if self._read_at == seen:
                    self._changed.wait(left)  # quiet since the last look: wait out the park
                    continue
            seen = self._read_at
            self._changed.wait(look)
            look = min(2 * look, LOOK_LIMIT * PARK)

    def _feed_all(self, data: bytes) -> None:
        """Feed ``data``, then what this thread read while a callback of that feed waited for
        room in the child's input (``wait_for_room``): in the order it was read."""
        self._feed(data)
        held = self._held
        while held:
            data = held[0] if len(held) == 1 else b"".join(held)
            held.clear()
            self._held_size = 0
            self._feed(data)

    # --- a caller waiting for its answer -----------------------------------------------------

    def wait(self, future: RequestFuture, timeout: float | None) -> float | None:
        """Wait for ``future`` by reading its answer if nobody else reads. Returns how long
        ``get()`` still waits on the future itself (0: out of time; None: for ever)."""
        with self._lock:
            lead = self.role is Role.FREE and self._callers_may_read
            if lead:
                self._fire(Trigger.TAKE)
            else:
                self._callers_waited = True
        if lead:
            deadline = None
            try:
                if timeout is not None:
                    deadline = time.monotonic() + timeout
                self._read_for(future, deadline)
            finally:
                self._leave()
            if deadline is not None:
                timeout = max(0.0, deadline - time.monotonic())
            if future.done() or timeout == 0:
                return timeout
            # This caller met end of file or bad bytes, which the reader thread now handles;
            # the future settles when the connection ends.
        self.watch(future)
        return timeout

    def _leave(self) -> None:
        with self._lock:
            self._fire(Trigger.LEAVE)
            self._read_at = time.monotonic()
            if self.watchers or not self._callers_may_read:
                self._reader_wanted = True
                self._changed.notify()

    def _read_for(self, future: RequestFuture, deadline: float | None) -> None:
        """Read and settle answers until ``future`` settles, time runs out, or end of file or
        a protocol error stops callers from reading (the reader thread takes over)."""
        fd, wake_r, poll = self._fd, self._wake_r, self._poll
        assert poll is not None
        busy_wait = self.busy_poll.wait
        outstanding = self._outstanding
        others_waited = False
        main = on_main_thread()
        while not future.done():
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                return
            if main and (timeout is None or timeout > MAIN_THREAD_SLICE):
                timeout = MAIN_THREAD_SLICE  # back to Python now and then: Ctrl-C raises
            # A spin holds the GIL: none right after a read that may have settled the futures
            # of other threads, which need the GIL to go on. None with other requests in
            # flight either: their answers come anyway (the count is read without a lock: a
            # hint).
            if others_waited or outstanding() > 1:
                events = poll(None if timeout is None else timeout * 1000.0)
            else:
                events = busy_wait(poll, timeout)
            readable = False
            for event_fd, _ in events:
                if event_fd == fd:
                    readable = True
                elif event_fd == wake_r:
                    with contextlib.suppress(OSError):
                        os.read(wake_r, 512)
            if not readable:
                continue
            # Whether this read may settle the futures of threads waiting without reading.
            others_waited = self.watchers > 0
            if not self._read_once(fd):
                return

    def _read_once(self, fd: int) -> bool:
        """One read by a caller holding the role; False once callers may read no more (it
        met end of file, which the reader thread reads again, or bytes that break the
        protocol, which the reader thread reports)."""
        try:
            data = os.read(fd, READ_SIZE)
        except OSError:
            data = b""
        if not data:
            with self._lock:
                self._callers_may_read = False
            return False
        try:
            self._feed_all(data)
        except ProtocolError as error:
            with self._lock:
                self._callers_may_read = False
                self._caller_failure = (error, data[:80])
            return False
        return True

    def watch(self, future: RequestFuture) -> None:
        """Count ``future`` as waited on by a thread that does not read, until it settles, and
        make sure the reader thread reads for it."""
        with self._lock:
            if future.watched:
                return
            future.watched = True
            self.watchers += 1
            if self.role is Role.FREE:
                self._reader_wanted = True
                self._changed.notify()
        ReplyFuture.add_done_callback(future, self._unwatch)

    def _unwatch(self, _future: ReplyFuture[dict[str, Any]]) -> None:
        with self._lock:
            self.watchers -= 1

    def wake(self) -> None:
        """A future settled without being read (a timeout, a lost connection): a caller
        reading for it must look again."""
        with self._lock:
            if self.role is Role.CALLER and self._wake_w >= 0:
                with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
                    os.write(self._wake_w, b"\0")

    def end(self) -> None:
        """The child has exited, or the connection is lost: callers read no more, and the
        reader thread (a parked one at once) reads what is left until end of file, so that
        the end is seen without waiting for its next look and the child never blocks
        writing while it goes. What it reads is fed as usual: after the child's exit the
        answers still in the pipe settle their futures; after a loss nobody waits for them."""
        with self._lock:
            self._ended = True
            self._callers_may_read = False
            self._reader_wanted = True
            self._changed.notify()

    # --- a writer waiting for room in the child's input --------------------------------------

    def wait_for_room(
        self, write_fd: int, deadline: float | None = None, *, hold: bool = False
    ) -> None:
        """Return once the child's input ``write_fd`` may have room, having made sure that the
        child's output is read meanwhile (see "No stall" in the module docstring); or once
        ``deadline`` (``time.monotonic()``) has passed, room or not.

        Raises ``WouldWait`` if this thread reads the child's output itself (a callback of its
        read writes): the write's rest goes to a helper thread. ``hold``: wait instead, keeping
        what it reads (for a writer with no helper thread), and raise ``OSError`` once that
        passes ``HOLD_LIMIT``. Raises ``BrokenPipeError`` once the connection has ended
        (``end()``), within ``WRITER_LOOK``: the rest of the write has nobody to go to."""
        with self._lock:
            nested = self._holder == threading.get_ident()
            lead = not nested and self.role is Role.FREE and self._callers_may_read
            if lead:
                self._fire(Trigger.TAKE)
            elif not nested:
                self._wait_behind()
        if nested:
            if not hold:
                raise WouldWait
            self._hold_until_room(write_fd, deadline)
            return
        if lead:
            try:
                room = self._read_until_room(write_fd, deadline)
            finally:
                self._leave()
            if room:
                return
            # It met end of file or bad bytes: the reader thread reads from now on.
            with self._lock:
                self._wait_behind()
        try:
            self._wait_writable(write_fd, deadline)
        finally:
            with self._lock:
                self.watchers -= 1

    def _wait_writable(self, write_fd: int, deadline: float | None) -> None:
        """Sleep until ``write_fd`` has room (or is broken), or ``deadline`` has passed, while
        another thread reads."""
        poller = select.poll()
        poller.register(write_fd, select.POLLOUT)
        while True:
            timeout = self._writer_timeout(deadline)
            if timeout == 0 or poller.poll(timeout):
                return

    def _writer_timeout(self, deadline: float | None) -> float:
        """A waiting writer's next ``poll()`` timeout (milliseconds; 0 once ``deadline`` has
        passed), at most ``WRITER_LOOK``; raises ``BrokenPipeError`` once the connection has
        ended."""
        if self._ended:  # read without the lock: a bool, set once
            raise BrokenPipeError(
                errno.EPIPE, "the connection has ended; the rest of the write is not sent"
            )
        timeout = _until(deadline)
        look = WRITER_LOOK * 1000.0
        return look if timeout is None else min(timeout, look)

    def _wait_behind(self) -> None:
        """Count this writer as a watcher while another thread reads (lock held)."""
        self._callers_waited = True
        self.watchers += 1
        if self.role is Role.FREE:
            self._reader_wanted = True
            self._changed.notify()

    def _read_until_room(self, write_fd: int, deadline: float | None) -> bool:
        """Read and feed the child's output until ``write_fd`` has room or ``deadline`` has
        passed (True), or until callers may read no more (False)."""
        fd = self._fd
        poller = select.poll()
        poller.register(write_fd, select.POLLOUT)
        poller.register(fd, select.POLLIN)
        while True:
            room = readable = False
            timeout = self._writer_timeout(deadline)
            if timeout == 0:
                return True  # its writer gives up the wait
            for event_fd, _ in poller.poll(timeout):
                if event_fd == write_fd:
                    room = True  # or broken: the write says which
                else:
                    readable = True
            # Read first: the child may be blocked writing, and reading lets it go on.
            if readable and not self._read_once(fd):
                return False
            if room:
                return True

    def _hold_until_room(self, write_fd: int, deadline: float | None) -> None:
        """Wait for room (or until ``deadline``) while a callback of this thread's own read
        writes: read meanwhile, and keep the bytes for that read (``_feed_all``) rather than
        parse them here, out of order. End of file is left in the pipe, for that read to
        meet. Raises ``OSError`` once more than ``HOLD_LIMIT`` bytes are kept."""
        fd = self._fd
        poller = select.poll()
        poller.register(write_fd, select.POLLOUT)
        if fd >= 0:
            poller.register(fd, select.POLLIN)
        while True:
            room = False
            timeout = self._writer_timeout(deadline)
            if timeout == 0:
                return
            for event_fd, _ in poller.poll(timeout):
                if event_fd == write_fd:
                    room = True
                    continue
                try:
                    data = os.read(fd, READ_SIZE)
                except OSError:
                    data = b""
                if data:
                    self._held.append(data)
                    self._held_size += len(data)
                    if self._held_size > HOLD_LIMIT:
                        raise OSError(
                            f"the child wrote {self._held_size} bytes while not reading its "
                            "input, and nothing could parse them until this write was done"
                        )
                else:
                    poller.unregister(fd)  # end of file: the interrupted read meets it again
            if room:
                return


def _until(deadline: float | None) -> float | None:
    """``poll()``'s timeout (milliseconds) for a wait until ``deadline`` (``time.monotonic()``;
    None: no deadline, ``poll_slice()``); 0 once it has passed."""
    limit = poll_slice()
    if deadline is None:
        return limit
    left = (deadline - time.monotonic()) * 1000.0
    if left <= 0:
        return 0
    return left if limit is None else min(left, limit)
