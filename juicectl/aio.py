"""asyncio: await juicectl's futures without blocking the event loop.

A pykka future is awaitable, but awaiting it calls its blocking ``get()`` on the loop's thread:
the whole loop stops until the child answers. Here the answer is handed to the loop instead:

* :func:`wrap_future` turns a juicectl future (a ``ReplyFuture``, which can notify callbacks)
  into an ``asyncio.Future``. The thread that settles it (the connection's reader, the
  controller actor) schedules the outcome on the loop with ``call_soon_threadsafe``; no thread
  waits. A plain pykka future, which cannot notify, is waited on by a daemon thread of its
  own instead.
* :func:`get_process`, :func:`stop_process` and :func:`call` are the async forms of the
  controller's and the connection's methods, and :class:`AsyncProcessController` wraps a
  ``ProcessController`` with async methods (and ``async with``).
* :class:`AsyncProcessPool` does the same for a ``ProcessPool``.

Cancelling a task that awaits one of these cancels only the waiting: a request that went to the
child is not withdrawn (the Juice protocol has no way to), it completes or times out as it
would have, and its outcome is dropped, without any "exception was never retrieved" noise.

Example::

    import asyncio
    from juicectl.aio import AsyncProcessController

    async def main() -> None:
        async with AsyncProcessController.start(argv, name="echo") as ctl:
            answer = await ctl.call(Echo, value="hi")

    asyncio.run(main())
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pykka

from juicectl._future import has_get_hook
from juicectl.connection import Connection
from juicectl.controller import ProcessController, check_request, ready_bound
from juicectl.exceptions import ProcessUnavailable, TooManyRequests
from juicectl.juice import Command
from juicectl.messages import StopResult
from juicectl.policy import check_timeout
from juicectl.pool import ProcessPool

__all__ = [
    "AsyncProcessController",
    "AsyncProcessPool",
    "call",
    "call_with",
    "get_process",
    "stop_process",
    "wrap_future",
]

T = TypeVar("T")


def wrap_future(
    future: pykka.Future[T] | concurrent.futures.Future[T],
    *,
    loop: asyncio.AbstractEventLoop | None = None,
) -> asyncio.Future[T]:
    """Return an ``asyncio.Future`` settled like ``future``, without blocking the loop.

    Args:
        future: a juicectl ``ReplyFuture`` (what every juicectl method returns), any pykka
            future, or a ``concurrent.futures.Future``.
        loop: the loop the result belongs to (default: the running loop).

    Cancelling the returned future does not touch ``future``: its outcome is dropped.

    Raises:
        TypeError: ``future`` is not a future, or ``loop`` not an event loop.
        RuntimeError: no loop was given and none is running.
    """
    if not isinstance(future, pykka.Future | concurrent.futures.Future):
        raise TypeError(
            f"future must be a pykka.Future (what juicectl returns) or a "
            f"concurrent.futures.Future, not {future!r}"
        )
    if loop is None:
        loop = asyncio.get_running_loop()
    elif not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(f"loop must be an asyncio event loop or None, not {loop!r}")
    if isinstance(future, concurrent.futures.Future):
        return asyncio.wrap_future(future, loop=loop)
    waiter: asyncio.Future[T] = loop.create_future()

    def deliver(outcome: Callable[[], T]) -> None:
        # On the loop's thread, once ``future`` is settled.
        if waiter.done():
            return  # the awaiting task was cancelled: the outcome is dropped on purpose
        try:
            value = outcome()
        except BaseException as error:
            if isinstance(error, StopIteration):  # cannot be stored in an asyncio future
                error = RuntimeError(f"the future failed with {error!r}")
            waiter.set_exception(error)
        else:
            waiter.set_result(value)

    def post(outcome: Callable[[], T]) -> None:
        # On the thread that settled ``future``: only schedule, never run user code here.
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(deliver, outcome)

    add_done_callback = getattr(future, "add_done_callback", None)
    # A future made by map()/filter()/join() computes its value in get() (a "get hook") and
    # is never settled itself, so its callbacks would never run: wait on it instead.
    hooked = has_get_hook(future)
    if callable(add_done_callback) and not hooked:
        # A ReplyFuture: already settled when the callback runs, so get() returns at once.
        add_done_callback(lambda _settled: post(lambda: future.get(timeout=0)))
    else:
        # A pykka future cannot notify anyone: a daemon thread waits on it (a daemon, so that
        # a future that is never settled cannot hold up the interpreter's exit).
        def wait() -> None:
            try:
                value = future.get()
            except BaseException as error:
                failure = error

                def outcome() -> T:
                    raise failure
            else:

                def outcome() -> T:
                    return value

            post(outcome)

        threading.Thread(target=wait, name="juicectl-aio-wait", daemon=True).start()
    return waiter


def _check_controller(controller: object, option: str = "controller") -> None:
    """A ``ProcessController``, or anything with its methods (``juicectl.testing``'s
    ``FakeController``)."""
    missing = [
        method
        for method in ("get_process", "stop_process", "stats", "close")
        if not callable(getattr(controller, method, None))
    ]
    if missing:
        raise TypeError(
            f"{option} must be a ProcessController (or a juicectl.testing.FakeController), "
            f"not {controller!r}"
        )


async def _wait(future: pykka.Future[T], timeout: float | None) -> T:
    waiter = wrap_future(future)
    if timeout is None:
        return await waiter
    # asyncio.timeout, not asyncio.wait_for: on Python 3.11, wait_for drops a cancellation
    # that comes as the future it waits on completes, and the cancelled task runs on.
    async with asyncio.timeout(timeout):
        return await waiter


async def get_process(controller: ProcessController, *, timeout: float | None = None) -> Connection:
    """``await`` the connection to a ready child, launching one if none runs.

    Fails like ``ProcessController.get_process()`` (``ProcessUnavailable``,
    ``ProcessLaunchError``, ``ControllerClosed``), or with ``TimeoutError`` after ``timeout``
    seconds (the controller goes on starting the child). A ``controller`` that is none, or a
    ``timeout`` that is not a number of seconds above 0 (or None), raises ``TypeError`` or
    ``ValueError`` at once.
    """
    _check_controller(controller)
    timeout = check_timeout(timeout, "timeout", none=True)
    return await _wait(controller.get_process(), timeout)


async def stop_process(
    controller: ProcessController, *, timeout: float | None = None
) -> StopResult:
    """``await`` the stop of the child: the ``StopResult`` once it has exited.

    Raises ``TimeoutError`` after ``timeout`` seconds (the stop goes on regardless); a bad
    ``controller`` or ``timeout`` raises ``TypeError`` or ``ValueError`` at once.
    """
    _check_controller(controller)
    timeout = check_timeout(timeout, "timeout", none=True)
    return await _wait(controller.stop_process(), timeout)


async def call(
    connection: Connection,
    command: type[Command],
    /,
    *,
    timeout: float | None = None,
    **arguments: Any,
) -> dict[str, Any]:
    """``await`` the response fields of one request on ``connection``.

    The async form of ``connection.call(command, timeout=timeout, **arguments)``: it fails the
    same ways (the declared exception class, ``RemoteJuiceError``, ``RequestTimeout`` after
    ``timeout`` seconds, ``ProcessUnavailable``), and ``ArgumentError`` at once for bad
    arguments. The request is written from the calling thread, as a write to the child's pipe.
    When ``max_in_flight`` requests are already outstanding, the call awaits a free slot
    without holding any thread (up to ``timeout``, then ``TooManyRequests``), and a call
    cancelled while it waits sends nothing. A ``connection`` that is none raises
    ``TypeError``.
    """
    return await call_with(connection, command, arguments, timeout=timeout)


async def call_with(
    connection: Connection,
    command: type[Command],
    arguments: Mapping[str, Any],
    *,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Like :func:`call`, with the arguments as a mapping (for a command with an argument
    named ``timeout``)."""
    if not isinstance(connection, Connection):
        raise TypeError(
            f"connection must be a juicectl Connection (from get_process()), not {connection!r}"
        )
    future = await _send(connection, command, arguments, timeout)
    return await wrap_future(future)


async def _send(
    connection: Connection,
    command: type[Command],
    arguments: Mapping[str, Any],
    timeout: float | None,
) -> pykka.Future[dict[str, Any]]:
    """Write one request; while every slot is taken, await ``when_slot_free`` and try again."""
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    refused_with_a_free_slot = False
    while True:
        try:
            return connection.call_with(command, arguments, timeout=timeout, wait_for_slot=False,
                                        may_block=False)
        except TooManyRequests:
            freed: asyncio.Future[None] = loop.create_future()

            def wake(freed: asyncio.Future[None] = freed) -> None:
                # On the thread that freed the slot, under the connection's lock: hand on only.
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(_set_if_pending, freed)

            withdraw = connection.when_slot_free(wake)
            if withdraw is None:
                # A slot is free: it was freed just now (try again), or the refusal was for
                # something else (a child that does not read its input), which stands.
                if refused_with_a_free_slot:
                    raise
                refused_with_a_free_slot = True
                continue
            refused_with_a_free_slot = False
            if timeout is not None and deadline is None:
                deadline = loop.time() + timeout
            try:
                if deadline is None:
                    await freed
                else:
                    async with asyncio.timeout_at(deadline):  # see _wait: not wait_for
                        await freed
            except TimeoutError:
                raise TooManyRequests(
                    f"no free slot within {timeout}s ({connection.max_in_flight} requests in "
                    f"flight to child {connection.pid}); {command.command_name} not sent"
                ) from None
            finally:
                withdraw()


def _set_if_pending(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AsyncProcessController:
    """A ``ProcessController`` with async methods; every wait happens off the event loop.

    Create one with :meth:`start` (the same arguments as ``ProcessController.start``) or wrap
    an existing controller. Use it as an async context manager to close it at the end::

        async with AsyncProcessController.start(argv) as ctl:
            connection = await ctl.get_process()
            print(await ctl.call(Echo, value="hi"))

    Attributes:
        controller: the wrapped ``ProcessController`` (its synchronous methods still work).
    """

    def __init__(self, controller: ProcessController) -> None:
        """Wrap ``controller`` (a ``ProcessController``, or a ``FakeController`` of
        ``juicectl.testing``); closing this object closes it.

        Raises:
            TypeError: ``controller`` is neither.
        """
        _check_controller(controller)
        self.controller = controller

    @classmethod
    def start(cls, argv: Sequence[str], **options: Any) -> AsyncProcessController:
        """Start a controller (in mode ``"stopped"``); see ``ProcessController.start``.

        Starting only creates the actors: it does not wait for anything, so it is fine to call
        on the loop.
        """
        return cls(ProcessController.start(argv, **options))

    @property
    def name(self) -> str:
        """The controller's name."""
        return self.controller.name

    async def get_process(self, *, timeout: float | None = None) -> Connection:
        """``await`` the connection to a ready child (see :func:`get_process`)."""
        return await get_process(self.controller, timeout=timeout)

    async def stop_process(self, *, timeout: float | None = None) -> StopResult:
        """``await`` the stop of the child (see :func:`stop_process`)."""
        return await stop_process(self.controller, timeout=timeout)

    async def call(
        self, command: type[Command], /, *, timeout: float | None = None, **arguments: Any
    ) -> dict[str, Any]:
        """Get the process (launching it if needed) and ``await`` one request's answer.

        ``timeout`` bounds the request (``RequestTimeout``), not the start: a child that
        cannot start fails the call as :meth:`get_process` fails (``ProcessUnavailable``,
        ``ProcessLaunchError``). Bad arguments raise ``ArgumentError`` before any child is
        launched.
        """
        return await self.call_with(command, arguments, timeout=timeout)

    async def call_with(
        self,
        command: type[Command],
        arguments: Mapping[str, Any],
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Like :meth:`call`, with the arguments as a mapping (for a command with an argument
        named ``timeout``)."""
        check_request(command, arguments, timeout)
        controller = self.controller
        bound = ready_bound(controller.spec, getattr(controller, "restart", None))
        try:
            connection = await _wait(controller.get_process(), bound)
        except TimeoutError:
            # The controller settles get_process() well within the bound: a safety net.
            raise ProcessUnavailable(
                f"controller {self.name!r}: no child ready within {bound:.0f}s"
            ) from None
        return await call_with(connection, command, arguments, timeout=timeout)

    async def mode(self) -> str:
        """The controller's mode (asked of its actor on a worker thread)."""
        return await asyncio.to_thread(lambda: self.controller.mode)

    async def stats(self) -> dict[str, Any]:
        """The controller's figures (see ``ProcessController.stats``)."""
        return await asyncio.to_thread(self.controller.stats)

    def subscribe(self, subscriber: pykka.ActorRef[Any]) -> None:
        """Tell ``subscriber`` every event from now on (does not wait)."""
        self.controller.subscribe(subscriber)

    async def close(self, timeout: float | None = None) -> StopResult | None:
        """Stop the child and the controller's actors (waits on a worker thread); returns
        what ``ProcessController.close()`` returns."""
        timeout = check_timeout(timeout, "timeout", none=True)
        return await asyncio.to_thread(self.controller.close, timeout)

    async def __aenter__(self) -> AsyncProcessController:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncProcessController {self.controller!r}>"


class AsyncProcessPool:
    """A ``ProcessPool`` with async methods; every wait happens off the event loop.

    Create one with :meth:`start` (the same arguments as ``ProcessPool.start``) or wrap an
    existing pool; ``async with`` closes it at the end::

        async with AsyncProcessPool.start(argv, size=2) as pool:
            answers = await asyncio.gather(*(pool.call(Echo, value=v) for v in values))

    Attributes:
        pool: the wrapped ``ProcessPool`` (its synchronous methods still work).
    """

    def __init__(self, pool: ProcessPool) -> None:
        """Wrap ``pool``; closing this object closes it.

        Raises:
            TypeError: ``pool`` is not a ``ProcessPool``.
        """
        if not isinstance(pool, ProcessPool):
            raise TypeError(f"pool must be a ProcessPool, not {pool!r}")
        self.pool = pool

    @classmethod
    def start(cls, target: Any, **options: Any) -> AsyncProcessPool:
        """Start a pool; see ``ProcessPool.start``. It only starts actors (the workers launch
        in the background), so it is fine to call on the loop."""
        return cls(ProcessPool.start(target, **options))

    @property
    def name(self) -> str:
        """The pool's name."""
        return self.pool.name

    async def call(
        self,
        command: type[Command],
        /,
        *,
        key: Any = None,
        timeout: float | None = None,
        **arguments: Any,
    ) -> dict[str, Any]:
        """``await`` one request's answer (see ``ProcessPool.call``): the request is written
        from the loop's thread, as ``pool.call`` writes it, and its outcome is handed to the
        loop. ``TooManyRequests`` is raised at once when the pool's queue is full. A call
        cancelled while the pool still holds its request (no worker could take it yet)
        takes it back: it is never sent."""
        return await self.call_with(command, arguments, key=key, timeout=timeout)

    async def call_with(
        self,
        command: type[Command],
        arguments: Mapping[str, Any],
        *,
        key: Any = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Like :meth:`call`, with the arguments as a mapping."""
        future = self.pool.call_with(command, arguments, key=key, timeout=timeout,
                                     may_block=False)
        try:
            return await wrap_future(future)
        except asyncio.CancelledError:
            future.withdraw()
            raise

    async def stats(self) -> dict[str, Any]:
        """The pool's figures (see ``ProcessPool.stats``), asked on a worker thread."""
        return await asyncio.to_thread(self.pool.stats)

    async def close(self, timeout: float | None = None) -> dict[str, StopResult | None] | None:
        """Stop every worker (in parallel) and the pool (waits on a worker thread); returns
        what ``ProcessPool.close()`` returns."""
        timeout = check_timeout(timeout, "timeout", none=True)
        return await asyncio.to_thread(self.pool.close, timeout)

    async def __aenter__(self) -> AsyncProcessPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncProcessPool {self.pool!r}>"
