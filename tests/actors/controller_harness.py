"""A controller driven by messages: a fake process actor, a recording subscriber, hooks.

The controller never sees a real child here. The fake factory starts a ``FakeProcess`` actor
that records what the controller tells it (``StopChild``); the test plays the process actor's
part by telling the controller ``ChildProcessCreated`` / ``ChildProcessTerminated``.

Every controller query goes through the controller's inbox (``_GetMode``), so once it is
answered every message told before it has been handled, and every event the controller told
its subscribers is in their inboxes ahead of the next ``ask()``.

A ``Gate`` holds the controller's thread while it answers a query (``Harness.hold``), so a
test can put messages into its inbox at a known point: behind a stop, for instance.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from juicectl._future import ReplyFuture
from juicectl.actors import ControllerActor, Mode, subscriber_for
from juicectl.messages import (
    ChildProcessCreated,
    ChildProcessTerminated,
    GetProcess,
    ProcessStarted,
    ProcessTerminated,
    StopChild,
    StopProcess,
    Subscribe,
    TerminationReason,
    _Close,
    _GetMode,
    _GetStats,
)
from juicectl.policy import LaunchSpec, RestartPolicy

WAIT = 5.0
"""Seconds to wait for anything that should happen promptly (a bound, never a speed test)."""

SPEC = LaunchSpec(argv=["fake-worker", "--serve"])


@dataclass(frozen=True)
class FakeConnection:
    """Stands in for the ``Connection`` of one child."""

    generation: int
    closed: bool = False
    """Like ``Connection.closed``: the child is gone or going."""


class FakeProcess(pykka.ThreadingActor):
    """Records every message the controller tells it; ``ask("received")`` lists them."""

    use_daemon_thread = True

    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation
        self.received: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "received":
            return list(self.received)
        self.received.append(message)
        return None


@dataclass
class Launch:
    generation: int
    ref: pykka.ActorRef[Any]
    at: float


class FakeFactory:
    """The ``ProcessFactory``: starts a ``FakeProcess`` and records the launch."""

    def __init__(self) -> None:
        self.launches: list[Launch] = []
        self.controllers: list[pykka.ActorRef[Any]] = []
        self.specs: list[LaunchSpec] = []
        self._changed = threading.Condition()
        self.fail_with: BaseException | None = None

    def __call__(
        self, controller: pykka.ActorRef[Any], generation: int, spec: LaunchSpec
    ) -> pykka.ActorRef[Any]:
        if self.fail_with is not None:
            raise self.fail_with
        ref = FakeProcess.start(generation)
        with self._changed:
            self.launches.append(Launch(generation, ref, time.monotonic()))
            self.controllers.append(controller)
            self.specs.append(spec)
            self._changed.notify_all()
        return ref

    def wait_for_launches(self, count: int, timeout: float = WAIT) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.launches) >= count, timeout):
                raise AssertionError(f"expected {count} launches, saw {len(self.launches)}")


class Recorder(pykka.ThreadingActor):
    """A subscriber that records every event; ``ask("events")`` lists them."""

    use_daemon_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "events":
            return list(self.events)
        if message != "sync":
            self.events.append(message)
        return None


class CountingHook:
    """A no-argument callable that counts its calls and sets an event on each."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.calls = 0
        self.called = threading.Event()
        self.error = error

    def __call__(self) -> None:
        self.calls += 1
        self.called.set()
        if self.error is not None:
            raise self.error


class ManualClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Gate:
    """Holds the thread that settles a future until the test releases it.

    Added as a future's done callback, it runs on the controller's thread as the controller
    answers, so while it is held the controller handles nothing and its inbox only fills.
    """

    def __init__(self) -> None:
        self.reached = threading.Event()
        self._opened = threading.Event()

    def __call__(self, _future: object) -> None:
        self.reached.set()
        # Bounded: a test that forgets to release fails on its own waits, it does not hang.
        self._opened.wait(WAIT)

    def wait_reached(self) -> None:
        if not self.reached.wait(WAIT):
            raise AssertionError("the controller never reached the gate")

    def release(self) -> None:
        self._opened.set()


class Harness:
    """A controller actor with a fake factory, a recorder, and startup/termination hooks."""

    def __init__(
        self,
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "test",
    ) -> None:
        self.factory = FakeFactory()
        self.recorder = Recorder.start()
        self.on_startup = CountingHook()
        self.on_termination = CountingHook()
        self.hooks = [
            subscriber_for(self.on_startup, [ProcessStarted], name=name),
            subscriber_for(self.on_termination, [ProcessTerminated], name=name),
        ]
        self.ref = ControllerActor.start(
            name,
            SPEC,
            self.factory,
            policy or RestartPolicy(mode="temporary"),
            [self.recorder, *self.hooks],
            clock,
        )

    # --- orders ---------------------------------------------------------------------------

    def get(self) -> ReplyFuture[Any]:
        future: ReplyFuture[Any] = ReplyFuture()
        self.ref.tell(GetProcess(future))
        return future

    def stop(self) -> ReplyFuture[Any]:
        future: ReplyFuture[Any] = ReplyFuture()
        self.ref.tell(StopProcess(future))
        return future

    def close(self) -> ReplyFuture[Any]:
        future: ReplyFuture[Any] = ReplyFuture()
        self.ref.tell(_Close(future))
        return future

    def subscribe(self, ref: Any) -> None:
        self.ref.tell(Subscribe(ref))

    # --- playing the process actor ----------------------------------------------------------

    @property
    def generation(self) -> int:
        """The controller's current generation (asked for: launches happen on its thread)."""
        return int(self.stats()["generation"])

    def created(self, generation: int | None = None, pid: int | None = None) -> None:
        gen = self.generation if generation is None else generation
        self.ref.tell(ChildProcessCreated(gen, pid or 4000 + gen, FakeConnection(gen)))

    def terminated(self, generation: int | None = None, **reason: Any) -> TerminationReason:
        gen = self.generation if generation is None else generation
        reason.setdefault("pid", 4000 + gen)
        how = reason.setdefault("how", "exited")
        if how in ("clean", "exited"):
            reason.setdefault("exit_status", 0 if how == "clean" else 1)
        why = TerminationReason(**reason)
        self.ref.tell(ChildProcessTerminated(gen, why))
        return why

    # --- looking --------------------------------------------------------------------------

    def mode(self) -> Mode:
        future: ReplyFuture[Mode] = ReplyFuture()
        self.ref.tell(_GetMode(future))
        return future.get(timeout=WAIT)  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        future: ReplyFuture[dict[str, Any]] = ReplyFuture()
        self.ref.tell(_GetStats(future))
        return future.get(timeout=WAIT)  # type: ignore[no-any-return]

    def hold(self) -> Gate:
        """Hold the controller's thread once it has handled everything told so far; the
        caller puts messages into its inbox meanwhile, then calls ``release()``."""
        gate = Gate()
        future: ReplyFuture[Mode] = ReplyFuture()
        future.add_done_callback(gate)
        self.ref.tell(_GetMode(future))
        gate.wait_reached()
        return gate

    def sync(self) -> Mode:
        """Wait until the controller and every subscriber have handled what was sent."""
        mode = self.mode()
        for hook in self.hooks:
            hook.ask("sync", timeout=WAIT)
        self.recorder.ask("sync", timeout=WAIT)
        return mode

    def events(self, *types: type) -> list[Any]:
        self.sync()
        events = self.recorder.ask("events", timeout=WAIT)
        return [e for e in events if not types or isinstance(e, types)]

    def stop_children(self, generation: int | None = None) -> list[StopChild]:
        """The ``StopChild`` orders the process actor of ``generation`` has received."""
        self.sync()
        gen = self.generation if generation is None else generation
        launch = next(launch for launch in self.factory.launches if launch.generation == gen)
        received = launch.ref.ask("received", timeout=WAIT)
        return [m for m in received if isinstance(m, StopChild)]


def into(h: Harness, mode: str) -> dict[str, Any]:
    """Drive a fresh controller into ``mode``; the futures still held there, by name."""
    futures: dict[str, Any] = {}
    if mode == "stopped":
        # After a child ran and ended, so that the child rows have a current generation.
        h.get()
        h.created()
        h.terminated(how="exited", exit_status=0)
    elif mode == "starting":
        futures["g0"] = h.get()
    elif mode == "ready":
        h.get()
        h.created()
    elif mode == "stopping":
        h.get()
        h.created()
        futures["s0"] = h.stop()
    elif mode == "waiting_ready":
        futures["g0"] = h.get()
        futures["s0"] = h.stop()
    assert h.sync() == mode
    return futures


def outcome(future: ReplyFuture[Any]) -> Any:
    """``"pending"``, the future's value, or the exception instance it holds."""
    if not future.done():
        return "pending"
    error = future.exception()
    return error if error is not None else future.get(timeout=0)


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)
