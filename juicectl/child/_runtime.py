"""The child side of a Juice connection: serve a worker's handlers on a pair of byte streams.

Why it is shaped like this:

* **One reader.** Only the serving thread reads the input. It parses every box in a chunk,
  routes answers to this child's own calls at once, and hands requests to the handlers.
* **Sequential by default, with nothing in the way.** With ``concurrency == 1`` handlers run
  on the reading thread itself, in arrival order: no thread hand-off, no queue. Each answer is
  written before the next request of the chunk starts, so that at any moment at most one
  request has started and not had its answer written: the promise a one-at-a-time worker makes
  in its ``Negotiate`` answer (below), on which a pool's re-dispatch after a crash relies.
* **Saying how it runs.** The ``Negotiate`` answer carries ``Concurrency: N`` beside
  ``Version: 1`` (unless the worker answers ``Negotiate`` itself): 1 for one request at a time,
  in order. Peers that do not know the field ignore it, as Juice peers ignore unknown fields.
* **Threads only when asked.** With ``concurrency == N > 1`` the reader submits each request
  to N daemon threads and keeps reading, so a slow handler does not hold a fast one; each
  answer is written as soon as it is ready, under a write lock (the tags keep the pairs).
  Once ``MAX_UNANSWERED`` requests await their answers, it holds back the requests it reads
  (reading on, to route the parent's answers to the handlers' own calls) and stops reading
  once it holds as many again: the pipes, not this process's memory, hold what a parent
  sends beyond that.
  Daemon threads, because a stuck handler must not keep the process alive once the conversation
  is over: the parent escalates to signals for that case, we must not make the exit wait.
* **Calling the parent from the reading thread.** A handler that runs on the reading thread
  and waits for an answer from the parent would wait forever, since the answer can only be
  read by that same thread. So waiting on a call's future from the reading thread reads and
  routes input itself (the requests it meets are kept, in order, for after the handler).
* **Endings, like the reference peer.** ``Shutdown`` is answered (after the requests before it
  are answered) and the output is closed. An unknown command or an undeclared exception is
  answered ``UNHANDLED`` and the output is closed at once; so is a fatal error. End of input
  ends the conversation once the requests already read are answered. A protocol error (bytes
  that are not Juice) ends it at once and is raised to the caller of :func:`serve`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar

from juicectl._busy_poll import DEFAULT_BUSY_POLL, check_busy_poll
from juicectl.child._io import InputLike, InputStream, OutputLike, OutputStream
from juicectl.child._stdio import (
    protect_stdio,
    route_logging_to_stderr,
    route_structlog_to_stderr,
)
from juicectl.juice import (
    UNHANDLED_CODE,
    UNHANDLED_DESCRIPTION,
    Answer,
    Box,
    BoxParser,
    Command,
    CommandMatcher,
    ErrorAnswer,
    Integer,
    JuicectlError,
    Limits,
    ListOf,
    Negotiate,
    ProtocolError,
    Reply,
    Request,
    RequestTable,
    Responders,
    Shutdown,
    answer_bytes,
    answer_outcome,
    classify,
    error_bytes,
    request_bytes,
)

if TYPE_CHECKING:
    import logging
    from concurrent.futures import Future

    from juicectl.child._calls import CallFuture

__all__ = ["ConnectionLost", "JuiceChild", "run", "serve"]

#: Whether the runtime's first log line sets ``logging`` up for stderr first: ``run()`` on the
#: process's stdio. ``logging`` (and ``concurrent.futures``, which imports it) are imported
#: only once needed: together they are a good part of a worker's start-up otherwise
#: (``docs/performance.md``, "The worker's start").
_route_logging_first = False


def _log() -> logging.Logger:
    """The runtime's logger (``logging`` is imported on its first use)."""
    global _route_logging_first
    import logging

    if _route_logging_first:
        _route_logging_first = False
        route_logging_to_stderr()
    return logging.getLogger("juicectl.child")

#: Finds Shutdown under any name the codec matches to it (case, "-" and "_" do not matter).
_is_shutdown_name = CommandMatcher({Shutdown.command_name: True}).lookup
#: Finds Shutdown and Negotiate, the requests the session answers itself: one lookup per request.
_special_name = CommandMatcher({Shutdown.command_name: True, Negotiate.command_name: True}).lookup

#: The environment variable a launcher sets to choose a worker's busy polling for it (seconds;
#: ``0`` turns it off), when neither ``run()``, ``serve()`` nor ``--busy-poll`` says: a pool
#: keeps the spinners on a machine within its cores with it (see ``docs/pools.md``).
BUSY_POLL_ENV = "JUICECTL_BUSY_POLL"

#: The exit status after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

#: The most handlers a worker runs at once: each is a thread, all started before the first
#: request is read, so a mistyped count would take the machine's threads and memory first.
MAX_CONCURRENCY = 1024

#: With ``concurrency`` above 1, the most requests handed to the handlers and not yet answered
#: (running or waiting for a handler thread). The reading thread holds back the next ones and
#: reads on, so that the parent's answers to the handlers' own calls still reach them; once it
#: holds as many again it stops reading: a parent that sends requests and reads no answers
#: fills the pipes and no more of this process's memory. As many as a parent controller keeps
#: in flight by default (``max_in_flight``), so that one never meets the second bound.
MAX_UNANSWERED = 1024


class _NegotiateConcurrency(Command):
    """``Negotiate`` as this runtime answers it: the version, and how many requests it runs at
    once (``Concurrency``, an extra field that peers who do not know it ignore)."""

    command_name = Negotiate.command_name
    arguments = [("versions", ListOf(Integer()))]
    response = [("version", Integer()), ("concurrency", Integer())]


#: The codec's own Negotiate handler: it picks the version (or refuses, closing the connection).
_builtin_negotiate = Responders(None).lookup(Negotiate.command_name)


class _Negotiator:
    """Answers ``Negotiate`` as the codec does, plus the session's concurrency."""

    def __init__(self, concurrency: int) -> None:
        self._concurrency = concurrency

    @_NegotiateConcurrency.responder
    def negotiate(self, versions: list[int]) -> dict[str, Any]:
        assert _builtin_negotiate is not None
        answer = dict(_builtin_negotiate[1](versions=versions))
        answer["concurrency"] = self._concurrency
        return answer


def _is_shutdown(command_name: str) -> bool:
    return _is_shutdown_name(command_name) is not None


class ConnectionLost(JuicectlError):
    """The conversation with the parent ended before the parent answered this child's call."""


class JuiceChild:
    """Base class of a worker: the handlers are methods decorated with ``@Command.responder``.

    Example::

        class Worker(JuiceChild):
            @Echo.responder
            def echo(self, value: str) -> dict[str, str]:
                return {"value": value}

        run(Worker)

    A handler receives the command's arguments as keyword arguments and returns a mapping of
    its response fields. An exception the command declares in ``errors`` is answered with its
    code and the worker keeps serving; one in ``fatal_errors`` is answered and ends the
    conversation; any other exception is answered ``UNHANDLED`` and ends it, as the reference
    peer does.

    Attributes:
        concurrency: how many handlers may run at once when ``run()``, ``serve()`` or the
            command line does not say; 1 (the default) runs them one at a time, in order.
        busy_poll: how long (seconds) a one-at-a-time worker may poll its input before it
            sleeps on it, when ``run()``, ``serve()`` or the command line does not say; 0 never
            polls. See ``docs/performance.md``.
    """

    concurrency: ClassVar[int] = 1
    busy_poll: ClassVar[float] = DEFAULT_BUSY_POLL

    _juice_session: _Session | None = None

    def call(self, command: type[Command], /, **kwargs: Any) -> Future[dict[str, Any]]:
        """Send ``command`` to the parent; return a future of the parsed response.

        The future fails with the exception class the command declared for the error code
        the parent sent, with :class:`~juicectl.juice.RemoteJuiceError` for other codes, or
        with :class:`ConnectionLost` if the conversation ends first. Waiting on it from a
        handler is fine at any concurrency. Bad arguments raise
        :class:`~juicectl.juice.ArgumentError` here, and arguments that would break the
        parent's limits :class:`~juicectl.juice.LimitExceeded`, before anything is sent.

        Raises:
            RuntimeError: the worker is not being served.
        """
        session = self._juice_session
        if session is None:
            raise RuntimeError(
                f"{type(self).__name__} is not being served: call() works while run() or "
                "serve() runs it"
            )
        return session.call(command, kwargs)


class _Session:
    """One conversation with the parent: reading, dispatch, writing and this child's calls."""

    def __init__(
        self,
        worker: object,
        source: InputLike,
        target: OutputLike,
        *,
        concurrency: int,
        limits: Limits | None,
        close_output: bool,
        busy_poll: float,
    ) -> None:
        # One Limits both ways, the parent's defaults too: what the parent sends is parsed
        # under them, and what is sent to the parent is checked against them first.
        self._limits = limits = limits if limits is not None else Limits()
        self._responders = Responders(worker, limits=limits)
        # Negotiate is answered here, with the concurrency, unless the worker answers it.
        own_negotiate = Responders(worker, builtins=False).lookup(Negotiate.command_name)
        self._negotiator = (
            Responders(_Negotiator(concurrency), builtins=False, limits=limits)
            if own_negotiate is None
            else None
        )
        self._parser = BoxParser(limits)
        # Only a one-at-a-time worker polls: its reading thread has nothing else to do, where
        # a concurrent worker's reader would take the GIL from the handlers.
        self._input = InputStream(source, busy_poll if concurrency == 1 else 0.0)
        self._output = OutputStream(target)
        self._close_output_at_end = close_output
        self._concurrency = concurrency

        self._write_lock = threading.Lock()
        self._output_closed = False
        self._output_released = False
        # Sequential mode: answers not written yet; written before the next request starts.
        self._pending: list[bytes] = []

        self._table_lock = threading.Lock()
        self._table: RequestTable[CallFuture] = RequestTable()
        self._table_closed = False

        # Set once the reader must stop (output closed, Shutdown done, parent gone).
        self._closing = False
        self._eof = False
        self._protocol_error: ProtocolError | None = None
        # Requests read while a handler waited on the reading thread, handled after it.
        self._backlog: deque[Request] = deque()
        self._reader_ident: int | None = None

        # Concurrent mode only.
        self._state = threading.Condition()
        self._in_flight = 0
        self._shutdown_request: Request | None = None
        self._shutdown_done = False
        self._holding = False  # the reader holds requests back for want of room (MAX_UNANSWERED)
        self._jobs: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._wake_r: int | None = None
        self._wake_w: int | None = None

    # -- the reading thread --------------------------------------------------------------

    def serve(self) -> None:
        self._reader_ident = threading.get_ident()
        try:
            if self._concurrency == 1:
                self._serve_sequential()
            else:
                self._serve_concurrent()
        finally:
            self._reader_ident = None
            self._fail_calls()
            self._close_output()
        if self._protocol_error is not None:
            raise self._protocol_error

    def is_reader_thread(self) -> bool:
        return self._reader_ident == threading.get_ident()

    def _read_boxes(self) -> list[Box]:
        """Read one chunk and return its boxes (none at a protocol error, which ends reading)."""
        data = self._input.read()
        if not data:
            self._eof = True
            self._fail_calls()
        try:
            return self._parser.feed(data)
        except ProtocolError as exc:
            self._protocol_failure(exc)
            return []

    def _read_requests(self) -> list[Request]:
        """Read one chunk; route the answers in it at once and return its requests."""
        boxes = self._read_boxes()
        requests: list[Request] = []
        for box in boxes:
            try:
                message = classify(box)
            except ProtocolError as exc:
                self._protocol_failure(exc)
                return []
            if isinstance(message, Request):
                requests.append(message)
            else:
                self._route(message)
        return requests

    def _protocol_failure(self, error: ProtocolError) -> None:
        _log().error("juice_protocol_error: %s", error)
        self._protocol_error = error
        self._eof = True
        self._closing = True
        self._fail_calls()

    def _serve_sequential(self) -> None:
        pending = self._pending
        handle = self._handle_inline
        while True:
            if self._backlog:
                requests = list(self._backlog)
                self._backlog.clear()
                for request in requests:
                    handle(request)
                    if self._closing:
                        break
            elif self._eof or self._closing:
                break
            else:
                self._handle_chunk()
            if pending:
                self._flush()
            if self._closing:
                break

    def _handle_chunk(self) -> None:
        """Read one chunk and handle what it holds: ``_read_requests`` and ``_handle_inline``
        in one, with no ``Request`` made and no fields copied out of the box for the usual
        request (this runs for every request)."""
        boxes = self._read_boxes()
        if len(boxes) > 1:
            # Answers first, as _read_requests routes them: a handler may wait on a thread
            # that waits on one of them.
            requests = []
            for box in boxes:
                if "_command" in box and "_answer" not in box and "_error" not in box:
                    requests.append(box)
                elif not self._route_box(box):
                    return
            boxes = requests
        pending = self._pending
        for box in boxes:
            name = box.get("_command")
            if (
                name is None
                or "_answer" in box
                or "_error" in box
                or _special_name(name) is not None
            ):
                self._route_box(box)  # a protocol error sets _closing, checked below
            else:
                if pending:
                    # The answers so far go out before this request starts: at most one
                    # request is ever started and unanswered (the Negotiate promise).
                    self._flush()
                reply = self._answer(name, box.get("_ask"), box)
                if isinstance(reply, bytes):
                    pending.append(reply)
                else:
                    self._keep(reply)
            if self._closing:
                return

    def _route_box(self, box: Box) -> bool:
        """Route an answer, or handle a request the careful way; False on a protocol error."""
        try:
            message = classify(box)
        except ProtocolError as exc:
            self._protocol_failure(exc)
            return False
        if isinstance(message, Request):
            self._handle_inline(message)
        else:
            self._route(message)
        return True

    def _handle_inline(self, request: Request) -> None:
        if _is_shutdown(request.command):
            reply = self._shutdown_reply(request)
        else:
            if self._pending:
                self._flush()  # as in _handle_chunk: answers out before the next starts
            reply = self._handle(request)
        self._keep(reply)

    def _keep(self, reply: Reply) -> None:
        """Queue a reply's bytes for the end of the chunk; close after them if it says so."""
        if reply.data is not None:
            self._pending.append(reply.data)
        if reply.close:
            self._closing = True

    def _flush(self) -> None:
        data = b"".join(self._pending)
        self._pending.clear()
        self._write(data)

    def pump_until(self, future: CallFuture, timeout: float | None) -> None:
        """Read and route input on the reading thread until ``future`` is done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._pending:
            self._flush()
        while not future.done() and not self._eof:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            if not self._input.wait(remaining):
                return
            self._backlog.extend(self._read_requests())

    # -- concurrent mode -----------------------------------------------------------------

    def _serve_concurrent(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        threads = [
            threading.Thread(target=self._work, name=f"juice-handler-{i}", daemon=True)
            for i in range(self._concurrency)
        ]
        for thread in threads:
            thread.start()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        try:
            while not self._closing:
                if self._backlog and self._submit_held():
                    continue
                if self._eof:
                    if not self._backlog:
                        break
                    self._wait_for_fewer_unanswered()
                    continue
                if len(self._backlog) >= MAX_UNANSWERED:
                    # As many again held back: from here the pipes hold what the parent sends.
                    self._wait_for_fewer_unanswered()
                    continue
                # Reading on while requests are held: the parent's answers to the handlers'
                # own calls must still be routed, or a handler waiting on one never returns.
                if not self._input.wait(None, self._wake_r):
                    self._drain_wake()  # woken: room for what is held, or the end
                    continue
                self._backlog.extend(self._read_requests())
            if not self._closing:
                # End of input: answer what was already read, as the sequential mode does.
                with self._state:
                    while self._in_flight and not self._closing:
                        self._state.wait()
                if self._shutdown_request is not None:
                    self._complete_shutdown()
        finally:
            for _ in threads:
                self._jobs.put(None)
            with self._state:
                wake_r, wake_w = self._wake_r, self._wake_w
                self._wake_r = self._wake_w = None
            os.close(wake_r)
            os.close(wake_w)

    def _submit_held(self) -> bool:
        """Hand the requests read to the handlers, as many as ``MAX_UNANSWERED`` allows (all
        of them from an input that cannot wake this thread); False if none could go."""
        with self._state:
            room = MAX_UNANSWERED - self._in_flight if self._input.fd is not None else None
            count = len(self._backlog) if room is None else max(0, min(room, len(self._backlog)))
            self._holding = count < len(self._backlog)
        for _ in range(count):
            self._submit(self._backlog.popleft())
        return count > 0

    def _wait_for_fewer_unanswered(self) -> None:
        # A handler that settles one notifies; so does the end of the conversation.
        with self._state:
            while self._in_flight >= MAX_UNANSWERED and not self._closing:
                self._state.wait()

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r is not None and os.read(self._wake_r, 512):
                pass

    def _wake_reader(self) -> None:
        # Called with _state held. Full, the pipe has a wake-up pending already.
        if self._wake_w is not None:
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_w, b"x")

    def _submit(self, request: Request) -> None:
        with self._state:
            if self._closing or self._shutdown_request is not None:
                return  # nothing after Shutdown runs
            if _is_shutdown(request.command):
                self._shutdown_request = request
                if self._in_flight:
                    return
            else:
                self._in_flight += 1
                self._jobs.put(request)
                return
        self._complete_shutdown()

    def _work(self) -> None:
        while True:
            request = self._jobs.get()
            if request is None:
                return
            try:
                reply = self._handle(request)
            except BaseException as exc:
                # SystemExit and the like cannot end the process from this thread: end the
                # conversation instead, so the parent sees the worker go.
                _log().error("juice_handler_failed: %s", request.command, exc_info=exc)
                reply = Reply(self._unhandled_bytes(request.tag), True, exc)
            if reply.data is not None:
                self._write(reply.data)
            if reply.close:
                self._abort()
            with self._state:
                self._in_flight -= 1
                last = not self._in_flight and self._shutdown_request is not None
                self._state.notify_all()
                if self._holding and self._in_flight < MAX_UNANSWERED:
                    self._holding = False
                    self._wake_reader()  # it waits on its input: room for what it holds
            if last:
                self._complete_shutdown()

    def _complete_shutdown(self) -> None:
        with self._state:
            request = self._shutdown_request
            if request is None or self._shutdown_done or self._closing:
                return
            self._shutdown_done = True
        reply = self._shutdown_reply(request)
        if reply.data is not None:
            self._write(reply.data)
        self._abort()

    def _abort(self) -> None:
        """Stop the conversation now: no more reading, no more writing."""
        with self._state:
            self._closing = True
            self._state.notify_all()
            self._wake_reader()
        self._close_output()

    # -- handlers ------------------------------------------------------------------------

    def _handle(self, request: Request) -> Reply:
        negotiator = self._negotiator
        if negotiator is not None and negotiator.lookup(request.command) is not None:
            reply = negotiator.answer(request.command, request.tag, request.box)
            if not isinstance(reply, bytes) and reply.close and reply.error is not None:
                # No version in common, or versions that are not numbers: say why it ends.
                _log().error("juice_negotiate_failed: %s (the connection closes)", reply.error)
        else:
            reply = self._answer(request.command, request.tag, request.box)
        return Reply(reply, False) if isinstance(reply, bytes) else reply

    def _answer(self, command_name: str, tag: str | None, box: Box) -> bytes | Reply:
        """Run the request's handler: its answer's bytes, or a Reply (logged if it closes)."""
        try:
            reply = self._responders.answer(command_name, tag, box)
        except Exception as exc:  # a bug between us and the handler: end like the reference
            reply = Reply(self._unhandled_bytes(tag), True, exc)
        if not isinstance(reply, bytes) and reply.close and reply.error is not None:
            _log().error(
                "juice_handler_failed: %s (the connection closes)", command_name,
                exc_info=reply.error,
            )
        return reply

    def _unhandled_bytes(self, tag: str | None) -> bytes | None:
        if tag is None:
            return None
        return error_bytes(tag, UNHANDLED_CODE, UNHANDLED_DESCRIPTION)

    def _shutdown_reply(self, request: Request) -> Reply:
        """Answer Shutdown: the worker's own responder if it has one, then close regardless."""
        if self._responders.lookup(request.command) is not None:
            reply = self._handle(request)
            return Reply(reply.data, True, reply.error)
        data = None if request.tag is None else answer_bytes(request.tag, Box())
        return Reply(data, True)

    # -- writing and this child's own calls ----------------------------------------------

    def _write(self, data: bytes) -> bool:
        with self._write_lock:
            if self._output_closed:
                return False
            try:
                self._output.write(data)
            except (OSError, ValueError):
                # The parent stopped reading (or the output is gone): nobody is left to answer.
                self._output_closed = True
            else:
                return True
        self._abort()
        return False

    def _close_output(self) -> None:
        with self._write_lock:
            self._output_closed = True
            if self._close_output_at_end and not self._output_released:
                self._output_released = True
                with contextlib.suppress(OSError, ValueError):
                    self._output.close()

    def call(self, command: type[Command], kwargs: dict[str, Any]) -> Future[dict[str, Any]]:
        from juicectl.child._calls import CallFuture  # concurrent.futures: on the first call

        arguments = command.make_arguments(kwargs)
        future = CallFuture(self)
        if not command.requires_answer:
            if self._write(request_bytes(command, None, arguments, self._limits)):
                future.set_result({})
            else:
                future.set_exception(ConnectionLost("the conversation with the parent is over"))
            return future
        with self._table_lock:
            tag = None if self._table_closed else self._table.open(command, future)
        data = b""
        if tag is not None:
            try:
                data = request_bytes(command, tag, arguments, self._limits)
            except BaseException:
                with self._table_lock:  # LimitExceeded, for one: nothing was written
                    self._table.pop(tag)
                raise
        if tag is None or not self._write(data):
            if tag is not None:
                with self._table_lock:
                    self._table.pop(tag)
            future.set_exception(ConnectionLost("the conversation with the parent is over"))
        return future

    def _route(self, message: Answer | ErrorAnswer) -> None:
        with self._table_lock:
            entry = self._table.pop(message.tag)
        if entry is None:
            _log().warning("juice_answer_for_unknown_tag: %s", message.tag)
            return
        command, future = entry
        outcome = answer_outcome(command, message)
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def _fail_calls(self) -> None:
        with self._table_lock:
            self._table_closed = True
            waiters = self._table.drain()
        for future in waiters:
            if not future.done():
                future.set_exception(
                    ConnectionLost("the conversation with the parent ended before its answer")
                )


def busy_poll_from_env() -> float | None:
    """The budget ``JUICECTL_BUSY_POLL`` sets, if it is set (seconds).

    Raises:
        ValueError: it is set to a bad value (the message names it and the value).
    """
    text = os.environ.get(BUSY_POLL_ENV)
    if text is None or not text.strip():
        return None
    try:
        return check_busy_poll(float(text))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{BUSY_POLL_ENV}={text!r}: {exc}") from None


def serve(
    worker: object,
    stdin: InputLike,
    stdout: OutputLike,
    *,
    concurrency: int | None = None,
    limits: Limits | None = None,
    close_output: bool = True,
    busy_poll: float | None = None,
) -> None:
    """Serve ``worker``'s handlers on ``stdin``/``stdout`` until the conversation ends; return.

    This is the in-process building block of :func:`run`: it touches no global state (no
    stream protection, no logging setup, no exit), so tests can drive a worker through a pipe
    pair. The conversation ends on ``Shutdown`` (answered), on end of input (once the requests
    already read are answered), after an ``UNHANDLED`` or fatal error answer, or when the
    parent stops reading. The output is closed at the end unless ``close_output`` is false.

    Args:
        worker: the handler object, usually a :class:`JuiceChild` instance.
        stdin: where requests arrive: a file descriptor or a binary stream.
        stdout: where answers go: a file descriptor or a binary stream.
        concurrency: how many handlers may run at once (default: ``worker.concurrency``, or 1).
        limits: the limits on line, body and header counts, both ways: what the parent sends is
            parsed under them, and an answer that would break them is not sent (an error
            answer with code ``LIMIT_EXCEEDED`` goes instead, and the conversation goes on).
            Default: ``Limits()``, the parent's default too.
        close_output: close ``stdout`` when the conversation ends.
        busy_poll: how long (seconds, at most 0.01) a one-at-a-time worker may poll a file
            descriptor ``stdin`` before it sleeps on it; it does so only while that brings
            requests sooner. 0 never polls. Default: the ``JUICECTL_BUSY_POLL`` environment
            variable if it is set (a pool sets it), else ``worker.busy_poll``, or 0.0001.

    Raises:
        ProtocolError: the input is not valid Juice (the output is closed first).
        ValueError: a bad ``concurrency``, ``busy_poll`` or ``JUICECTL_BUSY_POLL``.
    """
    if concurrency is None:
        concurrency = int(getattr(worker, "concurrency", 1))
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(
            f"concurrency must be between 1 and {MAX_CONCURRENCY}, not {concurrency}"
        )
    if busy_poll is None:
        busy_poll = busy_poll_from_env()
    if busy_poll is None:
        busy_poll = getattr(worker, "busy_poll", DEFAULT_BUSY_POLL)
    busy_poll = check_busy_poll(busy_poll)
    session = _Session(
        worker,
        stdin,
        stdout,
        concurrency=concurrency,
        limits=limits,
        close_output=close_output,
        busy_poll=busy_poll,
    )
    if isinstance(worker, JuiceChild):
        # Kept after the end, so that a late call() fails with ConnectionLost.
        worker._juice_session = session
    session.serve()


def run(
    worker: object,
    *,
    concurrency: int | None = None,
    stdin: InputLike | None = None,
    stdout: OutputLike | None = None,
    limits: Limits | None = None,
    exit_process: bool = True,
    busy_poll: float | None = None,
) -> None:
    """Serve a worker on this process's stdin and stdout, then exit with status 0.

    Before the worker is created, stdio is protected (see :func:`protect_stdio`): the protocol
    keeps private copies of stdin and stdout, and ``print()``, ``sys.stdout``, fd 1, ``logging``
    and an unconfigured structlog all write to stderr. ``python -m juicectl.child`` does the
    same before it even imports the worker's module.

    Args:
        worker: a worker class (created here with no arguments) or a ready instance.
        concurrency: how many handlers may run at once (default: the worker's
            ``concurrency`` attribute, 1 for :class:`JuiceChild`).
        stdin: serve on this input instead of the process's stdin.
        stdout: serve on this output instead of the process's stdout. When both are given,
            nothing process-wide is touched: no stream protection, no logging setup.
        limits: the limits on line, body and header counts, both ways (see :func:`serve`).
        exit_process: call ``sys.exit`` at the end (status 0, 1 after a protocol error, 130
            after Ctrl-C, quietly). When false, return instead, or raise the protocol error
            or the ``KeyboardInterrupt``.
        busy_poll: how long (seconds) a one-at-a-time worker may poll its input before it
            sleeps on it (default: the worker's ``busy_poll`` attribute, 0.0001); see
            :func:`serve`.
    """
    if busy_poll is not None:
        check_busy_poll(busy_poll)  # before stdio is touched or the worker created
    else:
        busy_poll_from_env()  # likewise: a bad JUICECTL_BUSY_POLL fails before anything
    source: InputLike
    target: OutputLike
    if stdin is not None and stdout is not None:
        source, target, on_stdio = stdin, stdout, False
    else:
        streams = protect_stdio()
        source = streams.read_fd if stdin is None else stdin
        target = streams.write_fd if stdout is None else stdout
        on_stdio = True
        # Now if the worker's module imported logging; else at the runtime's first log line.
        global _route_logging_first
        _route_logging_first = not route_logging_to_stderr(only_if_imported=True)
    instance = worker() if isinstance(worker, type) else worker
    if on_stdio:
        # After the worker's module and constructor ran: they may have imported structlog.
        route_structlog_to_stderr()
    try:
        serve(
            instance,
            source,
            target,
            concurrency=concurrency,
            limits=limits,
            busy_poll=busy_poll,
        )
    except ProtocolError:
        if not exit_process:
            raise
        sys.exit(1)
    except KeyboardInterrupt:
        # Ctrl-C reaches a worker run by hand only (under a controller it runs in a process
        # group of its own): the user stopped it, which needs no traceback.
        if not exit_process:
            raise
        sys.exit(EXIT_INTERRUPTED)
    if exit_process:
        sys.exit(0)
