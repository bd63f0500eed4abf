"""Request/response multiplexing over one child's stdin and stdout.

A ``Connection`` is what ``get_process()`` hands out. Any thread may ``call()`` on it; each
request gets a tag and a future, and the answer (in any order) settles that future.

Why writes happen on the caller's thread: every hand-off on the request path costs (an
actor's inbox costs a thread switch per request). The process actor still *owns* the child:
it creates the connection, runs its reader thread on the child's stdout, and ends it. The
connection only borrows the write end of the child's stdin, through a write function, and
the read end of its stdout, through ``serve_reads``.

Locking, kept small on purpose:

* ``_lock`` guards the outstanding-request table, the counters and the closed flag. It is
  never held while writing or while running a callback.
* Writes are *combined*: a caller appends its bytes to ``_pending`` and, if no other thread
  is writing, becomes the writer and flushes everything queued so far in one ``write``.
  Under load many requests leave in one system call; alone, a request is written at once.

Reading the child's stdout is a *role* that one thread holds at a time (``_role_lock``): the
reader thread (``serve_reads``, run by the process actor) or a caller. Whoever holds it reads,
parses and settles the futures of the answers directly. A caller waiting in ``get()`` while
nobody reads takes the role and reads its own answer: a request then costs no thread hand-off
at all (the reader waking, then the caller, each a context switch and a GIL transfer). While
callers read for themselves the reader thread stays parked; it takes the role back at once
when a thread waits without reading (another reader holds the role) or a future has callbacks
(``juicectl.aio``), when a caller meets end of file or a protocol error, and otherwise after
``_READER_PARK``: the bound on how late an answer nobody waits for, a request from the child or
end of file is read. It parks only after serving a caller that waited, with nobody waiting
now, and decides so under the same lock as it parks. A caller's read never outlives its wait:
a timeout or a lost connection wakes it through a pipe of the connection's own (without one,
for want of file descriptors, callers never read and the reader thread reads everything).
Holding ``_role_lock``, a thread never takes ``_lock``, and the reverse: no order to keep.

A caller reading may poll the pipe for up to ``busy_poll`` seconds before it sleeps on it, while
that brings answers sooner (``juicectl._busy_poll``): on an idle machine a sleeper is woken
tens of microseconds late. Never right after a read that may have woken other threads waiting
on this connection: a spin holds the GIL they need.

Requests the child sends to the parent are answered by the ``responder`` on one dispatch
thread, started on first use, so a slow responder never stalls the reader.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from juicectl._busy_poll import DEFAULT_BUSY_POLL, BusyPoll
from juicectl._future import ReplyFuture
from juicectl._log import get_logger
from juicectl._timer import TimerHandle, call_later
from juicectl.exceptions import (
    ArgumentError,
    LimitExceeded,
    ProcessUnavailable,
    ProtocolError,
    RequestTimeout,
    TooManyRequests,
)
from juicectl.juice import (
    Answer,
    BoxParser,
    Command,
    ErrorAnswer,
    Limits,
    Request,
    RequestTable,
    Responders,
    classify,
    parse_received_response,
    request_bytes,
)

log = get_logger(__name__)

# Bytes asked of the child's stdout per read: a whole burst of answers in one system call.
READ_SIZE = 1 << 16
# How many timed-out tags to remember, to tell a late answer from a bogus one.
_TIMED_OUT_MEMORY = 1024
# Bytes waiting to be written to a child that does not read its input, past which call()
# refuses more: timed-out requests free their slots, not their queued bytes.
_MAX_UNWRITTEN = 16 << 20

# Who reads the child's stdout (see the module docstring): nobody (a caller may), the reader
# thread, a caller waiting on its own answer, or nobody ever again (end of file was read).
_FREE, _READER, _CALLER, _ENDED = range(4)
# How long the reader thread leaves the pipe to callers who read their own answers, before it
# reads again if nobody does (seconds).
_READER_PARK = 0.01


class _RequestFuture(ReplyFuture[dict[str, Any]]):
    """A request's future: a caller waiting in ``get()`` reads the answer itself when it can,
    and one with callbacks makes sure the reader thread reads (see the module docstring)."""

    #: Whether counted in the connection's watchers (under its _role_lock).
    _watched = False
    #: The request's timeout, if it has one.
    _timer: TimerHandle | None = None

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self._connection = connection

    def get(self, *, timeout: float | None = None) -> Any:
        """The response fields (or raise); wait up to ``timeout`` seconds (None: forever)."""
        if not self._settled and self._get_hook is None:
            timeout = self._connection._await(self, timeout)
        return super().get(timeout=timeout)

    def add_done_callback(self, callback: Callable[[ReplyFuture[dict[str, Any]]], None]) -> None:
        """Call ``callback(future)`` once settled (at once if it already is)."""
        if not self._settled:
            self._connection._watch(self)
        super().add_done_callback(callback)


class Connection:
    """A Juice connection to one child process. Thread-safe.

    Created by the process actor; users get it from ``ProcessController.get_process()``.

    Args:
        write: writes all of the given bytes to the child's stdin (blocking); raises
            ``OSError`` if the pipe is broken.
        pid: the child's process id (for logs and errors).
        generation: the child's generation number.
        name: the controller's name.
        responder: an object with ``@Command.responder`` methods answering the child's
            requests, or None.
        request_timeout: the default timeout of ``call()``, in seconds, or None.
        max_in_flight: the most requests outstanding at once, each way (a child with more
            requests to the parent unanswered breaks the connection: ``LimitExceeded``).
        limits: the parser's limits for what the child sends.
        on_fatal: called (once, from the thread reading) when the connection must end
            because of what the child sent: a protocol error, or a request answered with a
            connection-closing error. The process actor stops the child.
        on_write_failed: called (once) when writing to the child's stdin fails. The
            requests in flight then stay registered for the caller of this hook to end with
            ``connection_lost`` (the process actor does, with why the child went); without
            it they fail at once.
        busy_poll: how long (seconds, at most 0.01) a caller reading its own answer may poll
            the child's stdout before it sleeps on it; it does so only while that brings
            answers sooner. 0 never polls. See ``docs/performance.md``.
    """

    def __init__(
        self,
        write: Callable[[bytes], None],
        *,
        pid: int,
        generation: int,
        name: str = "juicectl",
        responder: object | None = None,
        request_timeout: float | None = None,
        max_in_flight: int = 1024,
        limits: Limits | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        on_write_failed: Callable[[BaseException], None] | None = None,
        busy_poll: float = DEFAULT_BUSY_POLL,
    ) -> None:
        self._write = write
        self.pid = pid
        self.generation = generation
        self.name = name
        self.request_timeout = request_timeout
        self.max_in_flight = max_in_flight
        self._on_fatal = on_fatal
        self._on_write_failed = on_write_failed
        self._log = log.bind(controller=name, pid=pid, generation=generation)
        self._parser = BoxParser(limits)
        self._responders = Responders(responder, builtins=True)
        self._dispatcher: ThreadPoolExecutor | None = None
        self._incoming = 0  # the child's requests not yet answered (under _lock)

        self._lock = threading.Lock()
        self._slot_free = threading.Condition(self._lock)
        self._slot_waiters = 0  # callers waiting in _wait_for_slot (under _lock)
        self._table: RequestTable[_RequestFuture] = RequestTable()
        self._timed_out: OrderedDict[str, None] = OrderedDict()
        self._closed: ProcessUnavailable | None = None
        self._fatal_reported = False
        self._input_ended = False
        self._write_failed = False
        self.sent = 0
        self.answered = 0
        self.failed = 0

        self._pending: list[bytes] = []
        self._unwritten = 0  # bytes queued or being written (under _pending_lock)
        self._pending_lock = threading.Lock()
        self._flushing = False

        # Reading the child's stdout (see the module docstring); all under _role_lock. Until
        # serve_reads runs, the role is the reader thread's: callers wait.
        self._role_lock = threading.Lock()
        self._role_changed = threading.Condition(self._role_lock)
        self._role = _READER
        self._read_fd = -1
        self._wake_r = -1
        self._wake_w = -1  # written to wake a caller that reads (poll) when its future settles
        # How a reading caller waits on the pipe; used only by the thread holding _CALLER.
        self._busy_poll = BusyPoll(busy_poll)
        self._poll: Callable[[float | None], list[tuple[int, int]]] | None = None
        self._watchers = 0  # unsettled futures waited on (or with callbacks) by non-readers
        self._callers_waited = False  # a caller waited while another read, since the last park
        self._reader_wanted = False  # the parked reader thread must take the role back
        # False for good once a caller met end of file or bad bytes, once the connection is
        # lost, or when there is no wake pipe: from then on only the reader thread reads.
        self._callers_may_read = True
        self._caller_failure: tuple[ProtocolError, bytes] | None = None

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

        Bad arguments (missing, unknown, wrong type, not representable) raise
        ``ArgumentError`` here, before anything is written.

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
    ) -> ReplyFuture[dict[str, Any]]:
        """Like ``call()``, with the arguments as a mapping (for arguments named ``timeout``)."""
        if not (isinstance(command, type) and issubclass(command, Command)):
            raise ArgumentError(f"call() needs a Command subclass, not {command!r}")
        fields = command.make_arguments(arguments)
        if timeout is None:
            timeout = self.request_timeout
        elif timeout <= 0:
            raise ArgumentError(f"timeout must be > 0 seconds or None, not {timeout!r}")
        # Read without the lock: it is a bound, and an int is read whole.
        unwritten = self._unwritten
        if unwritten > _MAX_UNWRITTEN and not self.closed:
            raise TooManyRequests(
                f"child {self.pid} is not reading its input: {unwritten} bytes wait to be "
                f"written; {command.command_name} not sent"
            )
        future = _RequestFuture(self)

        if not command.requires_answer:
            with self._lock:
                closed = self._closed
            if closed is not None:
                future.try_set_exception(closed)
                return future
            self._send(request_bytes(command, None, fields))
            future.try_set({})
            return future

        with self._lock:
            if len(self._table) >= self.max_in_flight:
                self._wait_for_slot(timeout, wait_for_slot, command)
            if self._closed is not None:
                future.try_set_exception(self._closed)
                return future
            tag = self._table.next_tag()
            self._table.add(tag, command, future)
            self.sent += 1
        if timeout is not None:
            future._timer = call_later(timeout, lambda: self._expire(tag, command, timeout))
        self._send(request_bytes(command, tag, fields))
        return future

    def _wait_for_slot(self, timeout: float | None, wait: bool, command: type[Command]) -> bool:
        # Called with _lock held.
        if len(self._table) < self.max_in_flight or self._closed is not None:
            return True
        if not wait:
            raise TooManyRequests(
                f"{self.max_in_flight} requests already in flight to child {self.pid}; "
                f"{command.command_name} not sent"
            )
        # Counted, so that answers (one per request) notify only when someone waits.
        self._slot_waiters += 1
        try:
            got_slot = self._slot_free.wait_for(
                lambda: len(self._table) < self.max_in_flight or self._closed is not None,
                timeout=timeout,
            )
        finally:
            self._slot_waiters -= 1
        if not got_slot:
            raise TooManyRequests(
                f"no free slot within {timeout}s ({self.max_in_flight} requests in flight to "
                f"child {self.pid}); {command.command_name} not sent"
            )
        return True

    def _expire(self, tag: str, command: type[Command], timeout: float) -> None:
        with self._lock:
            popped = self._table.pop(tag)
            if popped is None:
                return
            self._remember_timed_out(tag)
            self.failed += 1
            self._slot_free.notify()
        popped[1].try_set_exception(
            RequestTimeout(f"{command.command_name} got no answer within {timeout}s")
        )
        self._wake_reading_caller()

    def _remember_timed_out(self, tag: str) -> None:
        self._timed_out[tag] = None
        if len(self._timed_out) > _TIMED_OUT_MEMORY:
            self._timed_out.popitem(last=False)

    def _send(self, data: bytes) -> None:
        """Queue ``data`` for the child's stdin; the first idle caller writes the queue."""
        with self._pending_lock:
            self._unwritten += len(data)
            if self._flushing:
                self._pending.append(data)
                return
            # Nobody writes, so nothing is queued: write our own bytes at once, then
            # whatever others queued meanwhile (two lock rounds for a lone request).
            self._flushing = True
        chunk = data
        while True:
            try:
                self._write(chunk)
            except (OSError, ValueError) as error:
                # The child is gone or its stdin closed. With an owner that watches the child
                # (the process actor), the requests stay registered: they fail at the exit,
                # with why the child went, or once the owner stops a child that merely
                # stopped reading. Without one, fail them now.
                self._log.debug("write_failed", error=str(error))
                with self._pending_lock:
                    self._pending.clear()
                    self._unwritten = 0
                    self._flushing = False
                if self._on_write_failed is not None:
                    with self._lock:
                        first = not self._write_failed
                        self._write_failed = True
                    if first:
                        self._on_write_failed(error)
                else:
                    self.connection_lost(ProcessUnavailable(
                        f"cannot write to child {self.pid}: {error}"
                    ))
                return
            with self._pending_lock:
                self._unwritten -= len(chunk)
                if not self._pending:
                    self._flushing = False
                    return
                chunk = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
                self._pending.clear()

    @property
    def in_flight(self) -> int:
        """How many requests await an answer."""
        with self._lock:
            return len(self._table)

    @property
    def closed(self) -> bool:
        """Whether the connection has ended (the child is gone or going)."""
        with self._lock:
            return self._closed is not None or self._input_ended or self._write_failed

    def input_ended(self) -> None:
        """The child's stdout reached end of file: nothing more will be answered.

        ``closed`` turns true at once; the requests in flight fail at ``connection_lost``,
        which the process actor calls as soon as it knows why the child went.
        """
        with self._lock:
            self._input_ended = True

    def stats(self) -> dict[str, int]:
        """Counters: requests sent, answered, failed, and in flight."""
        with self._lock:
            return {
                "sent": self.sent,
                "answered": self.answered,
                "failed": self.failed,
                "in_flight": len(self._table),
            }

    # --- reading: the reader thread, or a caller waiting on its answer -------------------

    def serve_reads(
        self, fd: int, on_protocol_error: Callable[[ProtocolError, bytes], None]
    ) -> None:
        """Read ``fd`` (the child's stdout) until end of file: the reader thread's loop.

        Callers waiting on their answers read ``fd`` too, one at a time, while this thread is
        parked (see the module docstring). If the bytes break the protocol,
        ``on_protocol_error(error, sample)`` is called (the sample: the start of the read
        that broke it); then the rest is read and dropped until end of file, so that a
        babbling peer never blocks on a full pipe while it is stopped.
        """
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
        with self._role_lock:
            self._read_fd, self._wake_w, self._poll = fd, wake_w, poller.poll
            self._wake_r = wake_r
            self._role = _READER
            if wake_r < 0:
                self._callers_may_read = False
        try:
            failure = self._read_until_eof(fd)
        finally:
            with self._role_lock:
                self._role = _ENDED
                self._read_fd = self._wake_w = -1
                self._poll = None
            if wake_r >= 0:
                os.close(wake_r)
                os.close(wake_w)
        if failure is not None:
            on_protocol_error(*failure)
            with contextlib.suppress(OSError):
                while os.read(fd, READ_SIZE):
                    pass

    def _read_until_eof(self, fd: int) -> tuple[ProtocolError, bytes] | None:
        """The reader thread's reads, until end of file or a protocol error (returned)."""
        while True:
            with self._role_lock:
                # Decided under the same lock as the parking itself, so that a caller who
                # starts waiting meanwhile is either counted here or finds the role free.
                if self._callers_waited and not self._watchers and self._callers_may_read:
                    # Callers read their own answers: leave them the pipe, and take it back
                    # when asked or when nobody has read for a while.
                    self._role = _FREE
                    self._callers_waited = False
                    until = time.monotonic() + _READER_PARK
                    while not (
                        self._role == _FREE
                        and (self._reader_wanted or time.monotonic() >= until)
                    ):
                        self._role_changed.wait(_READER_PARK)
                    self._role = _READER
                    self._reader_wanted = False
                if self._caller_failure is not None:
                    return self._caller_failure
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:
                data = b""
            try:
                self.data_received(data)
            except ProtocolError as error:
                return error, data[:80]
            if not data:
                return None

    def _await(self, future: _RequestFuture, timeout: float | None) -> float | None:
        """Wait for ``future`` by reading its answer if nobody else reads. Returns how long
        ``get()`` still waits on the future itself (0: out of time; None: for ever)."""
        with self._role_lock:
            lead = self._role == _FREE and self._callers_may_read
            if lead:
                self._role = _CALLER
            else:
                self._callers_waited = True
        if lead:
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                self._read_for(future, deadline)
            finally:
                with self._role_lock:
                    self._role = _FREE
                    if self._watchers or not self._callers_may_read:
                        self._reader_wanted = True
                        self._role_changed.notify()
            if deadline is not None:
                timeout = max(0.0, deadline - time.monotonic())
            if future._settled or timeout == 0:
                return timeout
            # This caller met end of file or bad bytes, which the reader thread now handles;
            # the future settles when the connection ends.
        self._watch(future)
        return timeout

    def _read_for(self, future: _RequestFuture, deadline: float | None) -> None:
        """Read and settle answers until ``future`` settles, time runs out, or end of file or
        a protocol error stops callers from reading (the reader thread takes over)."""
        fd, wake_r, poll = self._read_fd, self._wake_r, self._poll
        assert poll is not None
        busy_wait = self._busy_poll.wait
        others_waited = False
        while not future._settled:
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                return
            # A spin holds the GIL: none right after a read that may have settled the futures
            # of other threads, which need the GIL to go on.
            if others_waited:
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
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:
                data = b""
            if not data:
                with self._role_lock:
                    self._callers_may_read = False  # end of file: the reader thread reads it
                return
            others_waited = self._watchers > 0
            try:
                self.data_received(data)
            except ProtocolError as error:
                with self._role_lock:
                    self._callers_may_read = False
                    self._caller_failure = (error, data[:80])
                return

    def _watch(self, future: _RequestFuture) -> None:
        """Count ``future`` as waited on by a thread that does not read, until it settles, and
        make sure the reader thread reads for it."""
        with self._role_lock:
            if future._watched:
                return
            future._watched = True
            self._watchers += 1
            if self._role == _FREE:
                self._reader_wanted = True
                self._role_changed.notify()
        ReplyFuture.add_done_callback(future, self._unwatch)

    def _unwatch(self, _future: ReplyFuture[dict[str, Any]]) -> None:
        with self._role_lock:
            self._watchers -= 1

    def _wake_reading_caller(self) -> None:
        """A future settled without being read: a caller reading for it must look again."""
        with self._role_lock:
            if self._role == _CALLER and self._wake_w >= 0:
                with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
                    os.write(self._wake_w, b"\0")

    def data_received(self, data: bytes) -> None:
        """Parse what the child wrote and settle the futures it answers.

        Only the thread holding the read role calls it (see the module docstring). Raises
        ``ProtocolError`` if the child broke the protocol (the caller ends the child).
        """
        for box in self._parser.feed(data):
            # An answer (what nearly every box is) goes straight to its future, '-' headers
            # and all (see parse_received_response). That is classify()'s first test; anything
            # else goes through classify().
            tag = box.get("_answer")
            if tag is not None:
                self._answer(tag, box=box)
                continue
            message = classify(box)
            if isinstance(message, Answer):
                self._answer(message.tag, box=message.box)
            elif isinstance(message, ErrorAnswer):
                self._answer(message.tag, error=(message.code, message.description))
            else:
                self._request(message)

    def _answer(
        self,
        tag: str,
        *,
        box: Any = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        with self._lock:
            popped = self._table.pop(tag)
            closed = self._closed is not None
            if popped is None:
                late = tag in self._timed_out
                if late:
                    del self._timed_out[tag]
            elif self._slot_waiters:
                self._slot_free.notify()
        if popped is None:
            if late:
                self._log.info("late_answer_dropped", tag=tag)
            elif closed:
                # The connection ended (a write failed: the child died) while the child's
                # last answers were still in the pipe; their requests already failed with
                # ProcessUnavailable. Nothing is wrong with the child's tags.
                self._log.info("answer_after_close", tag=tag)
            else:
                self._log.warning("answer_for_unknown_tag", tag=tag,
                                  error_code=error[0] if error else None)
            return
        command, future = popped
        if future._timer is not None:
            future._timer.cancel()
        outcome: BaseException | None
        if error is not None:
            outcome = command.error_from_code(*error)
        else:
            try:
                result = parse_received_response(command, box)
            except (ArgumentError, ProtocolError) as parse_error:
                outcome = parse_error
            else:
                outcome = None
        if outcome is None:
            # Only the thread holding the read role counts answers: no lock needed for that.
            self.answered += 1
            future.try_set(result)
        else:
            with self._lock:
                self.failed += 1
            future.try_set_exception(outcome)

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
            flooded = dispatcher is not None and self._incoming >= self.max_in_flight
            if dispatcher is not None and not flooded:
                self._incoming += 1
        if flooded:
            raise LimitExceeded(
                f"child {self.pid} has {self.max_in_flight} requests to the parent waiting "
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
            self._fatal(ProcessUnavailable(
                f"child {self.pid} sent {request.command!r}, which closes the connection"
            ))

    def _fatal(self, error: BaseException) -> None:
        with self._lock:
            if self._fatal_reported:
                return
            self._fatal_reported = True
        if self._on_fatal is not None:
            self._on_fatal(error)

    def connection_lost(self, reason: ProcessUnavailable) -> None:
        """End the connection: fail every outstanding request with ``reason`` and refuse new
        ones. Idempotent; the first reason wins."""
        with self._lock:
            if self._closed is not None:
                return
            self._closed = reason
            waiting = self._table.drain()
            self.failed += len(waiting)
            self._slot_free.notify_all()
        for future in waiting:
            if future._timer is not None:
                future._timer.cancel()
            future.try_set_exception(reason)
        self._wake_reading_caller()
        with self._role_lock:
            # Nobody waits for answers any more: the reader thread reads (and drops) what is
            # left until end of file, so that the child never blocks writing while it goes.
            self._callers_may_read = False
            self._reader_wanted = True
            self._role_changed.notify()
        if self._dispatcher is not None:
            self._dispatcher.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Connection {self.name} pid={self.pid} generation={self.generation} {state}>"
