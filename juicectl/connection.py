"""Request/response multiplexing over one child's stdin and stdout.

A ``Connection`` is what ``get_process()`` hands out. Any thread may ``call()`` on it; each
request gets a tag and a future, and the answer (in any order) settles that future.

Three jobs, in three places:

* **The call API and write combining** (here): arguments checked, a tag and a future from the
  codec's call table (``RequestTable``), the request's bytes written on the caller's thread.
* **Who reads the child's stdout** (``juicectl._reading``): the reader thread, or a thread
  waiting on the connection (a caller for its answer, a writer for room in the pipe).
* **Dispatch of what arrives** (here, ``data_received``): answers settle their futures,
  requests from the child go to the responder, end of file ends the input.

The seam with the child's owner (the process actor, or an in-memory pair of
``juicectl.testing``) is narrow. The owner gives a **transport** (``write``, ``close``: the
child's input) and one **"lost, because ..." callback** (``on_lost``, with a
``ConnectionLoss``: the child's output broke the protocol, the child sent a request that closes
the connection, or its input is broken). It runs ``serve_reads`` on a thread of its own with
the child's output, and ends the connection with ``connection_lost(reason)`` once it knows why
the child went.

Why writes happen on the caller's thread: every hand-off on the request path costs (an
actor's inbox costs a thread switch per request). The owner still *owns* the child: it
creates the connection, runs its reader thread on the child's stdout, and ends it. The
connection only borrows the write end of the child's stdin, through the transport, and the
read end of its stdout, through ``serve_reads``.

Locking, kept small on purpose:

* ``_lock`` guards the call table, the counters and the closed state. It is never held while
  writing or while running a callback.
* Writes are *combined*: a caller appends its bytes to ``_pending`` and, if no other thread
  is writing, becomes the writer and flushes everything queued so far in one ``write``.
  Under load many requests leave in one system call; alone, a request is written at once. A
  writer that meets a full pipe reads the child's output while it waits (``_reading``).

Requests the child sends to the parent are answered by the ``responder`` on one dispatch
thread, started on first use, so a slow responder never stalls the reader.

What an owner may learn at a loss (a pool, re-sending what the child cannot have started):
every write gets its place in the order of writes (``RequestFuture.seq``, set as the bytes are
queued, under the write lock), and the connection counts how many were handed to the
transport. ``connection_lost`` stops all writing first (a request queued after that is never
written), then keeps the requests still outstanding, in write order, each marked *written*
(handed to the transport: it may have reached the child) or not: ``lost_requests``. With
``negotiate()`` the connection also learns how many requests the child runs at once
(``peer_concurrency``), from the extra field of the juicectl child's ``Negotiate`` answer.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from juicectl._future import ReplyFuture
from juicectl._log import get_logger
from juicectl._pipe import Transport, WaitForRoom, WouldWait, refuse_to_wait
from juicectl._reading import READ_SIZE, ReadRole, RequestFuture
from juicectl._threads import start_daemon
from juicectl._timer import Deadlines
from juicectl.exceptions import (
    ArgumentError,
    LimitExceeded,
    ProcessUnavailable,
    RequestTimeout,
    TooManyRequests,
    TruncatedBox,
)
from juicectl.juice import (
    BoxParser,
    Command,
    Integer,
    Limits,
    ListOf,
    Negotiate,
    Request,
    RequestTable,
    Responders,
    Shutdown,
    answer_outcome,
    classify,
    request_bytes,
)
from juicectl.policy import ConnectionOptions, check_timeout

__all__ = [
    "READ_SIZE",
    "STRAYS_LOGGED",
    "Connection",
    "ConnectionLoss",
    "LossCause",
    "LostRequest",
]

#: Answers for tags never asked that are each logged (``answer_for_unknown_tag``, with their
#: ``count``); after these, only the ones whose count is a power of two.
STRAYS_LOGGED = 64

log = get_logger(__name__)

# Bytes waiting to be written to a child that does not read its input, past which call()
# refuses more: timed-out requests free their slots, not their queued bytes.
_MAX_UNWRITTEN = 16 << 20

#: The longest a request may be given (``check_timeout``): what a thread can wait.
_TIMEOUT_MAX = threading.TIMEOUT_MAX

LossCause = Literal["protocol_error", "closing_request", "write_failed"]


@dataclass(frozen=True)
class ConnectionLoss:
    """Why a connection cannot go on, as the connection saw it; its owner decides the rest
    (when to end it with ``connection_lost``, and with what reason)."""

    cause: LossCause
    """``"protocol_error"``: the child's output is not Juice (or broke a limit);
    ``"closing_request"``: the child sent a request whose answer closes the connection;
    ``"write_failed"``: the child's input is broken (it closed its stdin, or died)."""
    error: BaseException
    """What went wrong."""
    sample: bytes = b""
    """For a protocol error: the start of the read that broke it."""


@dataclass(frozen=True)
class LostRequest:
    """A request that was still outstanding when its connection ended (``lost_requests``)."""

    future: RequestFuture
    """The request's future (already failed with the loss's ``ProcessUnavailable``); its
    ``context`` is what the caller gave ``call_with``."""
    written: bool
    """Whether its bytes were handed to the child's input: it may have reached the child. A
    request that was not can never have reached it: nothing is written after the loss."""


class _NegotiatePeer(Command):
    """``Negotiate``, reading the juicectl child's extra field too (absent from other peers)."""

    command_name = Negotiate.command_name
    arguments = [("versions", ListOf(Integer()))]
    response = [("version", Integer()), ("concurrency", Integer(optional=True))]


class _WriteFunction:
    """A plain function of the bytes as a transport: it writes them all, and has nothing to
    close (tests and benchmarks give one)."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write

    def write(self, data: bytes, wait_for_room: WaitForRoom) -> None:
        self._write(data)

    def close(self) -> None:
        pass


class Connection:
    """A Juice connection to one child process. Thread-safe.

    Created by the child's owner (the process actor); users get it from
    ``ProcessController.get_process()``.

    Args:
        transport: the child's input: a ``Transport`` (``write(data, wait_for_room)`` and
            ``close()``; the process actor gives a ``juicectl._pipe.PipeTransport``), or a
            function that writes all the bytes it is given and raises ``OSError`` if it
            cannot.
        pid: the child's process id (for logs and errors).
        generation: the child's generation number.
        name: the controller's name.
        options: the ``ConnectionOptions`` (default: ``ConnectionOptions()``).
        on_lost: called with a ``ConnectionLoss`` when the connection cannot go on because of
            what the child did (once per cause, from the thread that saw it). The connection
            has closed the transport by then, so the child sees the end of its input; the
            requests in flight stay registered for the owner to end with
            ``connection_lost`` (the process actor does, with why the child went). Without
            ``on_lost``, they fail at once.
    """

    def __init__(
        self,
        transport: Transport | Callable[[bytes], object],
        *,
        pid: int,
        generation: int,
        name: str = "juicectl",
        options: ConnectionOptions | None = None,
        on_lost: Callable[[ConnectionLoss], None] | None = None,
    ) -> None:
        if options is None:
            options = ConnectionOptions()
        elif not isinstance(options, ConnectionOptions):
            raise TypeError(f"options must be a ConnectionOptions, not {options!r}")
        if hasattr(transport, "write") and hasattr(transport, "close"):
            self._transport: Transport = transport
        elif callable(transport):
            self._transport = _WriteFunction(transport)
        else:
            raise TypeError(
                f"transport must have write() and close(), or be a function, not {transport!r}"
            )
        self.pid = pid
        self.generation = generation
        self.name = name
        self.options = options
        """The ``ConnectionOptions`` this connection runs with."""
        self._request_timeout = options.request_timeout
        self._max_in_flight = options.max_in_flight
        self._on_lost = on_lost
        self._log = log.bind(controller=name, pid=pid, generation=generation)
        # One Limits both ways: what the child sends is parsed under them, and what is sent to
        # the child is checked against them first (the child runs with the same defaults).
        self._limits = limits = options.limits if options.limits is not None else Limits()
        self._parser = BoxParser(limits)
        self._responders = Responders(options.responder, builtins=True, limits=limits)
        self._dispatcher: ThreadPoolExecutor | None = None
        self._incoming = 0  # the child's requests not yet answered (under _lock)

        self._lock = threading.Lock()
        self._slot_free = threading.Condition(self._lock)
        # Callers waiting in _wait_for_slot, and slot watchers (under _lock): answers notify
        # only when someone waits.
        self._slot_waiters = 0
        self._slot_watchers: list[Callable[[], object]] = []
        self._table: RequestTable[RequestFuture] = RequestTable()
        # The timeouts of the requests in flight, behind one timer (tag -> its timeout).
        self._deadlines: Deadlines[str, float] = Deadlines(self._expire_due)
        self._closed: ProcessUnavailable | None = None
        self._input_ended = False
        self._losses: set[LossCause] = set()  # causes already reported (under _lock)
        self.sent = 0
        self.answered = 0
        self.failed = 0
        self.reads = 0
        """How many reads of the child's output brought bytes (counted, as ``answered`` is, by
        the thread holding the read role). ``answered`` over it says whether answers wait to
        be read (several a read: this side is behind the child) or the child is the slower."""
        self._strays = 0  # answers for tags never asked (counted by the read role's thread)
        self.peer_concurrency: int | None = None
        """How many requests the child says it runs at once (1: one at a time, in order), as
        its ``Negotiate`` answer said (``negotiate()``); None until then, or if it did not say.
        """
        self._lost: tuple[LostRequest, ...] | None = None
        # Set once the owner began stopping the child (stop_taking): new requests get it.
        self._refusal: ProcessUnavailable | None = None
        self.when_request_done: Callable[[], None] | None = None
        """Called with no lock held each time a request left the table answered or timed out
        (its future settled by then; not at the end of the connection): an owner counting on
        ``in_flight`` learns of room without a callback per request (a pool's held requests).
        It must be quick: it runs on the thread that read the answer."""

        self._pending: list[bytes] = []
        self._unwritten = 0  # bytes queued or being written (under _pending_lock)
        self._pending_lock = threading.Lock()
        self._flushing = False
        self._queued = 0  # writes queued so far: the next one's seq (under _pending_lock)
        self._handed = 0  # writes handed to the transport, the first ones (under _pending_lock)
        self._sealed = False  # the connection ended: nothing more is written (_pending_lock)

        self._reading = ReadRole(self.data_received, busy_poll=options.busy_poll, log=self._log,
                                 outstanding=self._table.__len__)
        self._wait_for_room = self._reading.wait_for_room
        self._hold_for_room = functools.partial(self._reading.wait_for_room, hold=True)

    @property
    def request_timeout(self) -> float | None:
        """The default timeout of ``call()`` (``options.request_timeout``)."""
        return self._request_timeout

    @property
    def max_in_flight(self) -> int:
        """The most requests outstanding at once (``options.max_in_flight``)."""
        return self._max_in_flight

    # --- the caller's side --------------------------------------------------------------

    def call(
        self,
        command: type[Command],
        *,
        timeout: float | None = None,
        wait_for_slot: bool = True,
        **arguments: Any,
    ) -> ReplyFuture[dict[str, Any]]:
        """Send a request; return a future of the response fields (a dict).

        The future fails with the exception class the command declares for the error code,
        ``RemoteJuiceError`` for any other error answer, ``RequestTimeout`` after ``timeout``
        seconds (default: the connection's ``request_timeout``), or ``ProcessUnavailable`` if
        the connection is lost first. A request that went out is never re-sent.

        Bad arguments (missing, unknown, wrong type, not representable) and a bad
        ``timeout`` (not a number, not finite, not above 0) raise ``ArgumentError`` here,
        before anything is written. Arguments that would break the child's limits
        (``options.limits``: a header line over ``max_line_length``, for one) raise
        ``LimitExceeded`` here, naming the field, its size and the limit, before anything is
        written or copied: the child and the other requests go on. Bulk data travels as a
        body (a field named ``body``).

        When ``max_in_flight`` requests are outstanding, the caller waits for a free slot (up
        to ``timeout``) or, with ``wait_for_slot=False``, fails with ``TooManyRequests``.
        ``TooManyRequests`` is also raised while more than 16 MiB wait to be written (the
        child is not reading its input).

        A command without an answer (``requires_answer = False``) gets a future set to
        ``{}`` once written.
        """
        return self.call_with(command, arguments, timeout=timeout, wait_for_slot=wait_for_slot)

    def call_with(
        self,
        command: type[Command],
        arguments: Mapping[str, Any],
        *,
        timeout: float | None = None,
        wait_for_slot: bool = True,
        context: Any = None,
        future: RequestFuture | None = None,
        may_block: bool = True,
    ) -> ReplyFuture[dict[str, Any]]:
        """Like ``call()``, with the arguments as a mapping (for arguments named ``timeout``).

        ``may_block`` False: this caller never waits on the child's input pipe. A write that
        meets it full (a child that does not read while it works) is finished by a helper
        thread, and the call returns at once (``juicectl.aio`` writes so from the loop).

        ``context`` is kept on the request's future (``RequestFuture.context``) and given back
        in ``lost_requests`` if the connection ends first.

        ``future``: the request's future, made by the caller (an unsettled ``RequestFuture``,
        or a subclass that overrides ``lost``), returned and settled by this connection as its
        own would be: an owner that keeps its own record of a request (a pool) needs no second
        future chained to this one. On a connection that has ended it raises
        ``ProcessUnavailable`` instead, with nothing sent and ``future`` left as it was.
        """
        if not (isinstance(command, type) and issubclass(command, Command)):
            raise ArgumentError(f"call() needs a Command subclass, not {command!r}")
        fields = command.make_arguments(arguments)
        if timeout is None:
            timeout = self._request_timeout
        elif not (type(timeout) is float and 0.0 < timeout <= _TIMEOUT_MAX):  # else fine
            try:
                timeout = check_timeout(timeout, "timeout")
            except (TypeError, ValueError) as error:
                raise ArgumentError(f"{command.command_name} not sent: {error}") from None
        # Read without the lock: it is a bound, and an int is read whole.
        unwritten = self._unwritten
        if unwritten > _MAX_UNWRITTEN and not self.closed:
            raise TooManyRequests(
                f"child {self.pid} is not reading its input: {unwritten} bytes wait to be "
                f"written; {command.command_name} not sent"
            )
        given = future is not None
        if future is None:
            future = RequestFuture()
        future.reading = self._reading
        if context is not None:
            future.context = context

        if not command.requires_answer:
            with self._lock:
                closed = self._closed
                if closed is None and self._refusal is not None and command is not Shutdown:
                    closed = self._refusal
            if closed is not None:
                if given:
                    raise ProcessUnavailable(str(closed))
                future.try_set_exception(closed)
                return future
            self._send(request_bytes(command, None, fields, self._limits), None, may_block)
            future.try_set({})
            return future

        deadline = None
        with self._lock:
            if len(self._table) >= self._max_in_flight:
                self._wait_for_slot(timeout, wait_for_slot, command)
            closed = self._closed
            if closed is None and self._refusal is not None and command is not Shutdown:
                closed = self._refusal
            if closed is None:
                tag = self._table.open(command, future)
                self.sent += 1
                if timeout is not None:
                    future.timed = True
                    deadline = time.monotonic() + timeout
                    self._deadlines.add(deadline, tag, timeout, self._table)
        if closed is not None:
            if given:
                raise ProcessUnavailable(str(closed))
            future.try_set_exception(closed)
            return future
        try:
            data = request_bytes(command, tag, fields, self._limits)
        except BaseException:
            self._withdraw(tag)  # LimitExceeded, for one: nothing was written
            raise
        self._send(data, future, may_block, deadline=deadline)
        return future

    def _withdraw(self, tag: str) -> None:
        """Forget a request that was never written, and free its slot."""
        with self._lock:
            if self._table.pop(tag) is not None:
                self.sent -= 1
                if self._slot_waiters:
                    self._slot_freed()

    def _wait_for_slot(self, timeout: float | None, wait: bool, command: type[Command]) -> bool:
        # Called with _lock held.
        if len(self._table) < self._max_in_flight or self._closed is not None:
            return True
        if not wait:
            raise TooManyRequests(
                f"{self._max_in_flight} requests already in flight to child {self.pid}; "
                f"{command.command_name} not sent"
            )
        # Counted, so that answers (one per request) notify only when someone waits.
        self._slot_waiters += 1
        try:
            got_slot = self._slot_free.wait_for(
                lambda: len(self._table) < self._max_in_flight or self._closed is not None,
                timeout=timeout,
            )
        finally:
            self._slot_waiters -= 1
        if not got_slot:
            raise TooManyRequests(
                f"no free slot within {timeout}s ({self._max_in_flight} requests in flight to "
                f"child {self.pid}); {command.command_name} not sent"
            )
        return True

    def when_slot_free(self, callback: Callable[[], object]) -> Callable[[], None] | None:
        """Have ``callback()`` called once a request slot frees up (``max_in_flight``), or the
        connection ends: for a caller that must not block a thread on the wait (``juicectl.aio``
        awaits it). Returns a function that withdraws the callback, or None, without
        registering it, when a slot is free already or the connection has ended.

        ``callback`` runs on the thread that frees the slot, with the connection's lock held:
        it must only hand the news on (``loop.call_soon_threadsafe``, ``Event.set``), never
        call the connection. Another caller may take the slot first: try again, and wait
        again if it is gone.
        """
        with self._lock:
            if len(self._table) < self._max_in_flight or self._closed is not None:
                return None
            self._slot_watchers.append(callback)
            self._slot_waiters += 1

        def withdraw() -> None:
            with self._lock:
                if callback in self._slot_watchers:
                    self._slot_watchers.remove(callback)
                    self._slot_waiters -= 1

        return withdraw

    def _slot_freed(self, count: int = 1) -> None:
        # Called with _lock held: ``count`` slots are free (or the connection ended).
        self._slot_free.notify(count)
        watchers = self._slot_watchers
        if watchers:
            woken = watchers[:count]
            del watchers[:count]
            self._slot_waiters -= len(woken)
            for callback in woken:
                try:
                    callback()
                except Exception:
                    self._log.exception("slot_watcher_failed")

    def _expire_due(self) -> None:
        """Fail the requests whose timeout has passed (the timer thread)."""
        expired: list[tuple[type[Command], RequestFuture, float]] = []
        with self._lock:
            for tag, timeout in self._deadlines.pop_due():
                popped = self._table.give_up(tag)
                if popped is not None:  # else answered meanwhile
                    expired.append((*popped, timeout))
            if expired:
                self.failed += len(expired)
                if self._slot_waiters:
                    self._slot_freed(len(expired))
        for command, future, timeout in expired:
            stated = future.stated_timeout
            future.try_set_exception(RequestTimeout(
                f"{command.command_name} got no answer within "
                f"{timeout if stated is None else stated}s"
            ))
        if expired:
            self._reading.wake()
            done = self.when_request_done
            if done is not None:
                done()

    def _send(
        self,
        data: bytes,
        future: RequestFuture | None = None,
        may_block: bool = True,
        *,
        deadline: float | None = None,
    ) -> None:
        """Queue ``data`` for the child's stdin; the first idle caller writes the queue.

        ``future`` (a request's) gets its place in the write order. ``may_block`` False: a
        write that meets a full pipe is finished by a helper thread, not by this caller.
        ``deadline`` (``time.monotonic()``, the request's timeout): this caller waits for
        room until then at most, and a helper thread finishes the write after it (the
        request has failed by then; what the child holds of it must still be completed)."""
        with self._pending_lock:
            if self._sealed:
                return  # the connection has ended: its requests have failed already
            if future is not None:
                future.seq = self._queued
            self._queued += 1
            self._unwritten += len(data)
            if self._flushing:
                self._pending.append(data)
                return
            # Nobody writes, so nothing is queued: write our own bytes at once, then
            # whatever others queued meanwhile (two lock rounds for a lone request).
            self._flushing = True
            self._handed = self._queued
        if not may_block:
            self._flush(data, refuse_to_wait)
        elif deadline is None:
            self._flush(data, self._wait_for_room)
        else:
            self._flush(data, self._room_until(deadline))

    def _room_until(self, deadline: float) -> WaitForRoom:
        """A ``wait_for_room`` that waits, reading the child's output, until ``deadline`` at
        most, and then refuses (``WouldWait``): the write goes on in a helper thread."""
        wait_for_room = self._wait_for_room

        def wait(fd: int) -> None:
            if time.monotonic() >= deadline:
                raise WouldWait
            wait_for_room(fd, deadline)

        return wait

    def _flush(self, chunk: bytes, wait_for_room: WaitForRoom, rest: bytes | None = None) -> None:
        """As the one writer: write ``chunk`` (only its ``rest``, if the start of it is
        written already), then whatever was queued meanwhile, until nothing is."""
        write = self._transport.write
        while True:
            try:
                write(chunk if rest is None else rest, wait_for_room)
            except WouldWait as refused:
                # Full, and this caller must not wait (an event loop's thread) or wait any
                # longer (its request's timeout has passed): a helper thread writes the
                # rest, and the queue after it, reading the child's output while it waits,
                # as any writer does. Callers meanwhile only queue.
                if start_daemon(self._flush, "juicectl-writer", chunk, self._wait_for_room,
                                refused.rest):
                    self._log.debug("write_handed_off", waiting=len(refused.rest))
                    return
                # No thread (the interpreter is ending): wait here, holding what this
                # thread reads if it is the one that reads (a callback of its read).
                rest, wait_for_room = refused.rest, self._hold_for_room
                continue
            except (OSError, ValueError) as error:
                # The child is gone or its stdin closed. With an owner that watches the child
                # (the process actor), the requests stay registered: they fail at the exit,
                # with why the child went, or once the owner stops a child that merely
                # stopped reading. Without one, they fail now.
                self._log.debug("write_failed", error=str(error))
                self._drop_queued()
                self._lose(ConnectionLoss("write_failed", error))
                return
            except BaseException as error:
                # Interrupted while it waited for room (Ctrl-C on the main thread): the child
                # may hold the start of a box, which nothing can follow. End the connection
                # rather than leave the queue flushing for ever, and let the interrupt go on.
                self._log.warning("write_interrupted", error=type(error).__name__)
                self._drop_queued()
                cut = InterruptedError(
                    f"a write to the child's input was interrupted ({type(error).__name__}): "
                    "it may hold part of a request"
                )
                self._lose(ConnectionLoss("write_failed", cut))
                raise
            rest = None
            with self._pending_lock:
                self._unwritten -= len(chunk)
                if not self._pending or self._sealed:
                    self._pending.clear()
                    self._flushing = False
                    return
                chunk = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
                self._pending.clear()
                self._handed = self._queued

    def _drop_queued(self) -> None:
        """A write failed: nothing queued is written any more (the connection ends)."""
        with self._pending_lock:
            self._pending.clear()
            self._unwritten = 0
            self._flushing = False

    def negotiate(self, timeout: float | None = None) -> ReplyFuture[int]:
        """Ask the child for ``Negotiate`` (version 1); a future of the version it chose.

        The juicectl child's answer also says how many requests it runs at once: that sets
        ``peer_concurrency`` before the future is settled (other peers do not say; it stays
        None). Fails as ``call()`` does (``RemoteJuiceError`` for a child that refuses the
        version).
        """
        result: ReplyFuture[int] = ReplyFuture()
        answer = self.call(_NegotiatePeer, versions=[1], timeout=timeout)

        def settle(done: ReplyFuture[dict[str, Any]]) -> None:
            try:
                fields = done.get(timeout=0)
            except BaseException as error:
                result.try_set_exception(error)
                return
            concurrency = fields.get("concurrency")
            if isinstance(concurrency, int) and concurrency >= 1:
                self.peer_concurrency = concurrency
            result.try_set(fields["version"])

        answer.add_done_callback(settle)
        return result

    @property
    def lost_requests(self) -> tuple[LostRequest, ...] | None:
        """The requests outstanding when the connection ended, in the order they were written
        (those never written last), each with whether it was written; None while it is open.

        Set before their futures are told (``RequestFuture.lost``: they fail, unless their
        owner decides), so whoever sees such a failure can read it."""
        return self._lost

    @property
    def in_flight(self) -> int:
        """How many requests await an answer (read without the lock: a dict's length is read
        whole, and a reader that needs it exact counts what it adds itself)."""
        return len(self._table)

    def child_exited(self) -> None:
        """The owner reaped the child: what it wrote is read to end of file now, by the
        reader thread (a parked one resumes at once, instead of at its next look, up to
        90 ms later), so that the end is known, and a restart begins, without that wait.
        Answers still in the pipe settle their futures as usual."""
        self._reading.end()

    def stop_taking(self, refusal: ProcessUnavailable) -> None:
        """The owner is stopping the child: from now on a new request (but ``Shutdown``,
        which the stop itself sends) is refused at the door with ``refusal``, nothing
        written, as on a connection that has ended; those already written keep their
        answers. A pool's held requests then go to another worker, or fail with the pool's
        own error, instead of reaching a child that is on its way out."""
        with self._lock:
            if self._refusal is None:
                self._refusal = refusal

    @property
    def stopping(self) -> bool:
        """Whether the owner began stopping the child (``stop_taking``), or it has ended."""
        with self._lock:
            return self._refusal is not None or self._closed is not None

    @property
    def closed(self) -> bool:
        """Whether the connection has ended (the child is gone or going)."""
        with self._lock:
            return self._closed is not None or self._input_ended or bool(self._losses)

    def stats(self) -> dict[str, int]:
        """Counters: requests sent, answered, failed, and in flight."""
        with self._lock:
            return {
                "sent": self.sent,
                "answered": self.answered,
                "failed": self.failed,
                "in_flight": len(self._table),
            }

    # --- reading: the owner's reader thread ----------------------------------------------

    def serve_reads(self, fd: int, stop_fd: int = -1) -> None:
        """Read ``fd`` (the child's stdout) until end of file: the owner's reader thread.

        Callers waiting on the connection read ``fd`` too, one at a time, while this thread
        is parked (see ``juicectl._reading``). End of file in the middle of a box is end of
        file (the child died or closed its stdout while writing: ``stdout_ended_mid_box`` is
        logged), and ``closed`` turns true; the requests in flight fail once the owner says
        why, with ``connection_lost``. Bytes that break the protocol are a
        ``ConnectionLoss`` (``"protocol_error"``); then the rest is read and dropped until end
        of file, so that a babbling child never blocks on a full pipe while it is stopped.
        ``stop_fd`` readable or hung up ends the reading early (see ``ReadRole.serve``).
        """
        failure = self._reading.serve(fd, stop_fd)
        if failure is not None:
            error, sample = failure
            self._lose(ConnectionLoss("protocol_error", error, sample))
            watch = select.poll()
            watch.register(fd, select.POLLIN)
            if stop_fd >= 0:
                watch.register(stop_fd, select.POLLIN)
            with contextlib.suppress(OSError):
                while not any(ready == stop_fd for ready, _ in watch.poll()):
                    if not os.read(fd, READ_SIZE):
                        break
        with self._lock:
            self._input_ended = True

    def data_received(self, data: bytes) -> None:
        """Parse what the child wrote and settle the futures it answers (``b""``: end of
        file).

        Only the thread holding the read role calls it (see ``juicectl._reading``). Raises
        ``ProtocolError`` if the child broke the protocol.
        """
        if not data:
            self._output_ended()
            return
        self.reads += 1
        for box in self._parser.feed(data):
            # An answer (what nearly every box is) goes straight to its future, '-' headers
            # and all (see answer_outcome). That is classify()'s first test; anything else
            # goes through classify().
            tag = box.get("_answer")
            if tag is not None:
                self._answer(tag, box)
                continue
            message = classify(box)
            if isinstance(message, Request):
                self._request(message)
            else:
                self._answer(message.tag, message)

    def _output_ended(self) -> None:
        with self._lock:
            self._input_ended = True
        try:
            self._parser.feed(b"")
        except TruncatedBox as error:
            # The child died (SIGKILL, the OOM killer) or closed its stdout while writing a
            # box: not a protocol error but an end like any other, and the requests in flight
            # learn why from the owner, at the exit.
            self._log.info("stdout_ended_mid_box", error=str(error))

    def _answer(self, tag: str, answer: Any) -> None:
        with self._lock:
            popped = self._table.pop(tag)
            closed = self._closed is not None
            if popped is None:
                late = self._table.was_late(tag)
            else:
                if popped[1].timed:
                    self._deadlines.answered(tag)
                if self._slot_waiters:
                    self._slot_freed()
        if popped is None:
            if late:
                self._log.info("late_answer_dropped", tag=tag)
            elif closed:
                # The connection ended (a write failed: the child died) while the child's
                # last answers were still in the pipe; their requests already failed with
                # ProcessUnavailable. Nothing is wrong with the child's tags.
                self._log.info("answer_after_close", tag=tag)
            else:
                # Each one, up to a point; then ever fewer (at each power of two), so that a
                # child flooding the pipe with them cannot flood the application's log too.
                strays = self._strays = self._strays + 1
                if strays <= STRAYS_LOGGED or not strays & (strays - 1):
                    self._log.warning("answer_for_unknown_tag", tag=tag,
                                      error_code=getattr(answer, "code", None), count=strays)
            return
        command, future = popped
        outcome = answer_outcome(command, answer)
        if type(outcome) is not dict and isinstance(outcome, BaseException):
            with self._lock:
                self.failed += 1
            future.try_set_exception(outcome)
        else:
            # Only the thread holding the read role counts answers: no lock needed for that.
            self.answered += 1
            future.try_set(outcome)
        done = self.when_request_done
        if done is not None:
            done()

    def _request(self, request: Request) -> None:
        # Under the lock: connection_lost shuts down the dispatcher it finds once closed,
        # so none may be created after that (its thread would never end).
        with self._lock:
            if self._dispatcher is None and self._closed is None:
                self._dispatcher = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix=f"juicectl-responder-{self.pid}"
                )
            dispatcher = self._dispatcher if self._closed is None else None
            # A child that keeps sending without waiting for answers (or while not reading
            # them) would queue requests here without bound.
            flooded = dispatcher is not None and self._incoming >= self._max_in_flight
            if dispatcher is not None and not flooded:
                self._incoming += 1
        if flooded:
            raise LimitExceeded(
                f"child {self.pid} has {self._max_in_flight} requests to the parent waiting "
                "for an answer (max_in_flight) and sent another"
            )
        try:
            if dispatcher is not None:
                dispatcher.submit(self._respond, request)
                return
        except RuntimeError:  # connection_lost shut the dispatcher down just now
            pass
        # Nobody answers on an ended connection; the child is on its way out.
        self._log.debug("request_after_close", command=request.command)

    def _respond(self, request: Request) -> None:
        try:
            self._respond_to(request)
        finally:
            with self._lock:
                self._incoming -= 1

    def _respond_to(self, request: Request) -> None:
        reply = self._responders.handle(request)
        if reply.error is not None:
            self._log.warning("responder_failed", command=request.command,
                              error=repr(reply.error))
        if reply.data is not None and not self.closed:
            self._send(reply.data)
        if reply.close:
            self._lose(ConnectionLoss("closing_request", ProcessUnavailable(
                f"child {self.pid} sent {request.command!r}, which closes the connection"
            )))

    # --- ending --------------------------------------------------------------------------

    def _lose(self, loss: ConnectionLoss) -> None:
        """The connection cannot go on: close the child's input and tell the owner why (once
        per cause), or, without an owner, end the connection now."""
        with self._lock:
            if loss.cause in self._losses:
                return
            self._losses.add(loss.cause)
        self._transport.close()
        if self._on_lost is not None:
            self._on_lost(loss)
            return
        if loss.cause == "write_failed":
            detail = f"cannot write to child {self.pid}: {loss.error}"
        elif loss.cause == "protocol_error":
            detail = f"child {self.pid} broke the protocol: {loss.error}"
        else:
            detail = str(loss.error)
        self.connection_lost(ProcessUnavailable(detail))

    def connection_lost(self, reason: ProcessUnavailable) -> None:
        """End the connection: fail every outstanding request with ``reason`` and refuse new
        ones. Idempotent; the first reason wins."""
        with self._lock:
            if self._closed is not None:
                return
            self._closed = reason
            waiting = self._table.drain()
            self._deadlines.clear()
            self.failed += len(waiting)
            self._slot_free.notify_all()
            self._slot_freed(len(self._slot_watchers))
        with self._pending_lock:
            # From here on nothing is written: whatever was not handed to the transport yet
            # never reaches the child, and ``lost_requests`` can say so.
            self._sealed = True
            handed = self._handed
        self._lost = _in_write_order(waiting, handed)
        for future in waiting:
            future.lost(reason)
        self._reading.wake()
        self._reading.end()
        if self._dispatcher is not None:
            self._dispatcher.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Connection {self.name} pid={self.pid} generation={self.generation} {state}>"


def _in_write_order(futures: list[RequestFuture], handed: int) -> tuple[LostRequest, ...]:
    """``futures`` as ``LostRequest``s: the written ones by their place in the write order,
    then the others (never written) as the table held them."""
    written = sorted(
        (future for future in futures if future.seq is not None and future.seq < handed),
        key=lambda future: future.seq or 0,
    )
    unwritten = [future for future in futures if future.seq is None or future.seq >= handed]
    return (
        *(LostRequest(future, True) for future in written),
        *(LostRequest(future, False) for future in unwritten),
    )
