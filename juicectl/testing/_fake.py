"""``FakeController``: a stand-in for ``ProcessController`` on in-memory children."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pykka

from juicectl._future import ReplyFuture
from juicectl._log import get_logger
from juicectl.actors.subscribers import publish
from juicectl.connection import Connection
from juicectl.exceptions import ControllerClosed, ProcessUnavailable
from juicectl.juice import Command, Limits
from juicectl.messages import (
    ModeChanged,
    ProcessStarted,
    ProcessTerminated,
    StopResult,
    TerminationReason,
)
from juicectl.policy import ConnectionOptions
from juicectl.testing._children import InMemoryChild, ScriptedChild

log = get_logger(__name__)

#: The connection options' defaults, for the keywords of FakeController.
_DEFAULTS = ConnectionOptions()


Hook = Callable[[], Any] | pykka.ActorRef[Any] | None


class FakeController:
    """A stand-in for ``ProcessController`` whose children are :class:`InMemoryChild` pairs.

    It answers the same calls (``get_process``, ``stop_process``, ``call``, ``mode``,
    ``stats``, ``subscribe``, ``close``, ``with``), with the same futures, so code written
    against a controller can be tested without processes. It is simpler on purpose: the child
    starts at once on the caller's thread (``mode`` is only ever ``"stopped"`` or
    ``"ready"``), and a child that ends is not restarted until the next ``get_process()``
    (the ``"temporary"`` restart mode).

    Args:
        worker: a worker class (a fresh instance per child, as a new process would have) or
            an instance (shared by every child: a :class:`ScriptedChild` keeps its record).
        name: the controller's name.
        prepare: ``prepare(connection)``, run before a new child is handed out, as with
            ``ProcessController``; it may return a future to wait for.
        on_process_startup: a no-argument callable (called on the thread that started the
            child) or an ``ActorRef`` (told ``ProcessStarted``).
        on_process_termination: likewise, for a child that ended without a stop being
            asked for (told ``ProcessTerminated``).
        responder, request_timeout, max_in_flight, limits: the connection's options, as
            for ``ProcessController.start`` (see ``juicectl.policy.ConnectionOptions``);
            checked here, and given whole to every child.
        concurrency: how many handlers the in-memory runtime runs at once.
        startup_timeout: how long ``prepare``'s future and ``call()`` wait for the child.
    """

    def __init__(
        self,
        worker: object,
        *,
        name: str = "fake",
        prepare: Callable[[Connection], Any] | None = None,
        on_process_startup: Hook = None,
        on_process_termination: Hook = None,
        responder: object | None = _DEFAULTS.responder,
        request_timeout: float | None = _DEFAULTS.request_timeout,
        max_in_flight: int = _DEFAULTS.max_in_flight,
        limits: Limits | None = _DEFAULTS.limits,
        concurrency: int | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self._worker = worker
        self._prepare = prepare
        self._on_startup = on_process_startup
        self._on_termination = on_process_termination
        self._options = ConnectionOptions(
            responder=responder,
            request_timeout=request_timeout,
            max_in_flight=max_in_flight,
            limits=limits,
        )
        self._concurrency = concurrency
        self._startup_timeout = startup_timeout
        self._lock = threading.RLock()
        self._child: InMemoryChild | None = None
        self._stop_requested = False
        self._closed = False
        self._subscribers: list[pykka.ActorRef[Any]] = []
        self.children: list[InMemoryChild] = []
        """Every in-memory child started, oldest first."""

    # --- the ProcessController surface ------------------------------------------------------

    def get_process(self) -> ReplyFuture[Connection]:
        """A future of the connection to a ready child (started now if none runs)."""
        future: ReplyFuture[Connection] = ReplyFuture()
        with self._lock:
            if self._closed:
                future.try_set_exception(ControllerClosed(f"controller {self.name} is closed"))
                return future
            child = self._current()
            if child is None:
                try:
                    child = self._launch()
                except BaseException as error:
                    future.try_set_exception(
                        error if isinstance(error, ProcessUnavailable)
                        else ProcessUnavailable(f"starting the in-memory child failed: {error!r}")
                    )
                    return future
            future.try_set(child.connection)
        return future

    def stop_process(self) -> ReplyFuture[StopResult]:
        """Stop the child; the future holds a ``StopResult`` once it has ended."""
        future: ReplyFuture[StopResult] = ReplyFuture()
        with self._lock:
            future.try_set(self._stop())
        return future

    def call(self, command: Any, *, timeout: float | None = None, **arguments: Any) -> Any:
        """Get the process and send one request; block for the response dict."""
        connection = self.get_process().get(timeout=timeout or self._startup_timeout)
        return connection.call(command, timeout=timeout, **arguments).get()

    @property
    def mode(self) -> str:
        """``"ready"`` while a child serves, else ``"stopped"``."""
        with self._lock:
            return "ready" if self._current() is not None else "stopped"

    @property
    def worker(self) -> object:
        """The worker object of the current (or last) child, or the shared instance."""
        with self._lock:
            if self.children:
                return self.children[-1].worker
            return self._worker

    def stats(self) -> dict[str, Any]:
        """Figures like ``ProcessController.stats()``: mode, generation, starts, and the
        current connection's request counters under ``requests``."""
        with self._lock:
            child = self._current()
            return {
                "name": self.name,
                "mode": "ready" if child is not None else "stopped",
                "pid": None,
                "generation": len(self.children),
                "starts": len(self.children),
                "restarts": 0,
                "requests": child.connection.stats() if child is not None else None,
            }

    def subscribe(self, subscriber: pykka.ActorRef[Any]) -> None:
        """Tell ``subscriber`` every event from now on (``ModeChanged``, ``ProcessStarted``,
        ``ProcessTerminated``)."""
        with self._lock:
            self._subscribers.append(subscriber)

    def kill_child(self, reason: str = "killed") -> None:
        """Make the current child "crash": requests in flight fail with
        ``ProcessUnavailable``, the mode becomes ``"stopped"``, the termination hook runs, and
        the next ``get_process()`` starts a new child."""
        with self._lock:
            child = self._current()
            if child is None:
                return
            child.kill(reason)
            self._ended(child, TerminationReason(how="killed", detail=reason))

    def close(self, timeout: float | None = None) -> StopResult | None:
        """Stop the child (if any) and refuse any further ``get_process()``. Idempotent."""
        with self._lock:
            if self._closed:
                return None
            result = self._stop()
            self._closed = True
            return result

    def __enter__(self) -> FakeController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FakeController {self.name} worker={self._worker!r}>"

    # --- inside -----------------------------------------------------------------------

    def _current(self) -> InMemoryChild | None:
        child = self._child
        if child is not None and child.connection.closed:
            # It ended on its own (Shutdown, an UNHANDLED answer, a protocol error).
            self._ended(child, TerminationReason(how="exited", detail="the conversation ended"))
            child = None
        return child

    def _launch(self) -> InMemoryChild:
        worker = self._worker() if isinstance(self._worker, type) else self._worker
        generation = len(self.children) + 1
        self._publish(ModeChanged(self.name, "stopped", "starting", "GetProcess", generation))
        child = InMemoryChild(
            worker,
            name=self.name,
            generation=generation,
            options=self._options,
            concurrency=self._concurrency,
        )
        self.children.append(child)
        if self._prepare is not None:
            try:
                outcome = self._prepare(child.connection)
                getter = getattr(outcome, "get", None)
                if callable(getter):
                    getter(timeout=self._startup_timeout)
            except BaseException:
                child.stop()
                self._publish(
                    ModeChanged(self.name, "starting", "stopped", "ChildProcessTerminated",
                                generation)
                )
                raise
        self._child = child
        self._stop_requested = False
        self._publish(ModeChanged(self.name, "starting", "ready", "ChildProcessCreated",
                                  generation))
        self._publish(ProcessStarted(self.name, generation, 0))
        self._hook(self._on_startup, ProcessStarted(self.name, generation, 0))
        return child

    def _stop(self) -> StopResult:
        child = self._current()
        if child is None:
            return StopResult("not_running")
        self._stop_requested = True
        self._publish(ModeChanged(self.name, "ready", "stopping", "StopProcess",
                                  child.generation))
        how = child.stop()
        reason = TerminationReason(how=how, requested=True, exit_status=0)
        self._ended(child, reason)
        return StopResult(how, reason)

    def _ended(self, child: InMemoryChild, reason: TerminationReason) -> None:
        if self._child is not child:
            return
        self._child = None
        old = "stopping" if reason.requested else "ready"
        self._publish(ModeChanged(self.name, old, "stopped", "ChildProcessTerminated",
                                  child.generation))
        if not reason.requested:
            event = ProcessTerminated(self.name, child.generation, reason)
            self._publish(event)
            self._hook(self._on_termination, event)

    def _publish(self, event: object) -> None:
        publish(self._subscribers, event)

    def _hook(self, hook: Hook, event: object) -> None:
        if hook is None:
            return
        if isinstance(hook, pykka.ActorRef):
            with contextlib.suppress(pykka.ActorDeadError):
                hook.tell(event)
            return
        try:
            hook()
        except Exception:
            log.exception("hook_failed", controller=self.name, event_type=type(event).__name__)


def scripted_controller(
    script: Mapping[type[Command] | str, Any], **options: Any
) -> FakeController:
    """A :class:`FakeController` whose children answer from ``script`` (see
    :class:`ScriptedChild`); ``ctl.worker.calls`` records what they received."""
    return FakeController(ScriptedChild(script), **options)
