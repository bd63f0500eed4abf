"""``FakeController``: the real controller, whose children are served in memory.

A ``FakeController`` is a ``ProcessController`` (the real handle and the real
``ControllerActor``: its modes, events, restart policy, figures and errors) started with a
process factory that makes an ``InMemoryProcess`` actor (:mod:`juicectl.testing._process`)
per child, in place of the ``ProcessActor`` of a child process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pykka

from juicectl._future import ReplyFuture
from juicectl._log import get_logger
from juicectl.connection import Connection
from juicectl.controller import ProcessController
from juicectl.juice import Command, Limits
from juicectl.messages import StopResult
from juicectl.policy import ConnectionOptions, LaunchSpec, Readiness, RestartPolicy
from juicectl.testing._checks import check_concurrency, check_worker
from juicectl.testing._children import InMemoryChild, ScriptedChild
from juicectl.testing._process import InMemoryProcess

log = get_logger(__name__)

#: The connection options' defaults, for the keywords of FakeController.
_DEFAULTS = ConnectionOptions()

Hook = Callable[[], Any] | pykka.ActorRef[Any] | None


class FakeController:
    """A ``ProcessController`` whose children are :class:`InMemoryChild` pairs.

    It *is* the real controller: ``controller`` is a ``ProcessController`` started with an
    in-memory process factory, so the modes (``"starting"`` included), the events
    (``ModeChanged``, ``ProcessStarted``, ``ProcessTerminated``, ``GaveUp``), the hooks (run
    in subscriber actors), the restart policy, ``stats()`` and the errors are the real ones.
    Each child serves ``worker`` with the real child runtime on threads of this process; its
    pid is 0. :meth:`kill_child` kills the current child as SIGKILL from outside would.

    Args:
        worker: a worker class (a fresh instance per child, as a new process would have) or
            an instance (shared by every child: a :class:`ScriptedChild` keeps its record).
        name: the controller's name.
        restart: the ``RestartPolicy`` (default: ``"temporary"``, as for the
            ``juicectl_controller`` fixture: a child that ends is replaced on the next
            ``get_process()``, not by itself).
        concurrency: how many handlers the in-memory runtime runs at once (default: the
            worker's own setting).
        prepare, on_process_startup, on_process_termination, readiness, subscribers,
        startup_timeout, stop_timeout, kill_timeout, responder, request_timeout,
        max_in_flight, limits: as for ``ProcessController.start``, and checked the same way.
        busy_poll: checked as ``ProcessController.start`` checks it, so that code passing
            its options through can pass them here; an in-memory child never busy-polls
            (both sides share one GIL: a spin on one side only slows the other).

    ``start()``'s ``env``, ``cwd``, ``launcher`` and ``process_factory`` place or replace a
    process, of which a fake has none: they are not taken (``TypeError`` names the one given).

    Raises:
        TypeError: an option has the wrong type (the message names it and the value).
        ValueError: an option is out of its range.
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
        restart: RestartPolicy | None = None,
        readiness: Readiness = "negotiate",
        startup_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        kill_timeout: float = 2.0,
        subscribers: Iterable[pykka.ActorRef[Any]] = (),
        busy_poll: float = _DEFAULTS.busy_poll,
    ) -> None:
        check_worker(worker)
        check_concurrency(concurrency)
        self._worker = worker
        self._concurrency = concurrency
        self._lock = threading.Lock()
        self._processes: list[pykka.ActorRef[Any]] = []
        self.children: list[InMemoryChild] = []
        """Every in-memory child started, oldest first."""
        self.controller: ProcessController = ProcessController.start(
            ["in-memory", _label(worker)],
            name=name,
            prepare=prepare,
            on_process_startup=on_process_startup,
            on_process_termination=on_process_termination,
            responder=responder,
            request_timeout=request_timeout,
            max_in_flight=max_in_flight,
            limits=limits,
            restart=restart if restart is not None else RestartPolicy(mode="temporary"),
            readiness=readiness,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
            kill_timeout=kill_timeout,
            subscribers=subscribers,
            busy_poll=busy_poll,
            process_factory=self._start_process,
        )
        """The real ``ProcessController``: pass it wherever one is expected."""
        self.name = self.controller.name

    # --- the ProcessController surface ------------------------------------------------------

    @property
    def spec(self) -> LaunchSpec:
        """The controller's ``LaunchSpec`` (argv ``["in-memory", <worker>]``)."""
        return self.controller.spec

    @property
    def actor_ref(self) -> pykka.ActorRef[Any]:
        """The controller actor's ``ActorRef`` (see ``ProcessController.actor_ref``)."""
        return self.controller.actor_ref

    def get_process(self) -> ReplyFuture[Connection]:
        """A future of the connection to a ready child, launching one if none runs."""
        return self.controller.get_process()

    def stop_process(self) -> ReplyFuture[StopResult]:
        """Stop the child; the future holds a ``StopResult`` once it has ended."""
        return self.controller.stop_process()

    def call(self, command: Any, *, timeout: float | None = None, **arguments: Any) -> Any:
        """Get the process and send one request; block for the response dict."""
        return self.controller.call(command, timeout=timeout, **arguments)

    @property
    def mode(self) -> str:
        """The controller's mode (see ``ProcessController.mode``)."""
        return self.controller.mode

    def stats(self) -> dict[str, Any]:
        """The controller's figures, exactly as ``ProcessController.stats()`` gives them
        (``pid`` is 0 while an in-memory child runs)."""
        return self.controller.stats()

    def subscribe(self, subscriber: pykka.ActorRef[Any]) -> None:
        """Tell ``subscriber`` every event from now on."""
        self.controller.subscribe(subscriber)

    def close(self, timeout: float | None = None) -> StopResult | None:
        """Stop the child (if any) and the controller's actors (see
        ``ProcessController.close``)."""
        return self.controller.close(timeout)

    def __enter__(self) -> FakeController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FakeController {self.name} worker={self._worker!r}>"

    # --- what only the fake does ------------------------------------------------------------

    @property
    def worker(self) -> object:
        """The worker object of the current (or last) child, or the shared instance."""
        with self._lock:
            if self.children:
                return self.children[-1].worker
            return self._worker

    def kill_child(self, reason: str = "kill_child()") -> None:
        """Kill the current child (one starting, too) as ``kill -9`` from outside kills a
        process: requests in flight fail with ``ProcessUnavailable``, the controller sees a
        termination nobody asked for (``ProcessTerminated`` with ``how="signaled"``, the
        termination hook, the restart policy). Returns once the controller has handled it;
        does nothing if no child runs."""
        with self._lock:
            process = self._processes[-1] if self._processes else None
        if process is None:
            return
        if not InMemoryProcess.kill(process, reason):
            return  # that child has ended already
        self.controller.mode  # noqa: B018 - a round trip: the termination is handled by now

    # --- inside -------------------------------------------------------------------------

    def _start_process(
        self, controller: pykka.ActorRef[Any], generation: int, spec: LaunchSpec
    ) -> pykka.ActorRef[Any]:
        ref = InMemoryProcess.start(
            controller, generation, spec, self._worker, self.name, self._concurrency,
            self._child_started,
        )
        with self._lock:
            self._processes.append(ref)
        return ref

    def _child_started(self, child: InMemoryChild) -> None:
        with self._lock:
            self.children.append(child)


def _label(worker: object) -> str:
    if isinstance(worker, type):
        return f"{worker.__module__}:{worker.__qualname__}"
    return repr(worker)


def scripted_controller(
    script: Mapping[type[Command] | str, Any], **options: Any
) -> FakeController:
    """A :class:`FakeController` whose children answer from ``script`` (see
    :class:`ScriptedChild`); ``ctl.worker.calls`` records what they received."""
    return FakeController(ScriptedChild(script), **options)
