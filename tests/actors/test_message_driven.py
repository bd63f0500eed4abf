"""A user's pykka actor drives a ``ProcessController`` with messages only, never blocking.

The actor gets the controller's ``actor_ref``, subscribes itself, asks for the process with
``GetProcess`` and stops it with ``StopProcess``; each reply comes back as a message of its own,
told by a ``ReplyFuture`` callback. No real child: the controller's process factory starts a
fake process actor, and the test plays its part (``ChildProcessCreated``, then
``ChildProcessTerminated`` once the controller has told it ``StopChild``). Between the order
and the reply the actor keeps answering other messages: it is not waiting on anything.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pykka
import pytest
from controller_harness import WAIT, FakeConnection, FakeFactory, outcome

from juicectl import ProcessController, ReplyFuture, RestartPolicy
from juicectl.messages import (
    ChildProcessCreated,
    ChildProcessTerminated,
    GetProcess,
    ModeChanged,
    ProcessStarted,
    StopChild,
    StopProcess,
    StopResult,
    Subscribe,
    TerminationReason,
)


@dataclass(frozen=True)
class Replied:
    """The client's own message: the reply to one of its orders has come."""

    order: str
    future: ReplyFuture[Any]


class Client(pykka.ThreadingActor):
    """Subscribes, gets the process, then stops it; records what it receives."""

    use_daemon_thread = True

    def __init__(self, controller: pykka.ActorRef[Any]) -> None:
        super().__init__()
        self.controller = controller
        self.received: list[Any] = []

    def reply_to(self, order: str) -> ReplyFuture[Any]:
        future: ReplyFuture[Any] = ReplyFuture()
        me = self.actor_ref

        def tell_me(settled: ReplyFuture[Any]) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(Replied(order, settled))

        future.add_done_callback(tell_me)
        return future

    def on_start(self) -> None:
        self.controller.tell(Subscribe(self.actor_ref))
        self.controller.tell(GetProcess(self.reply_to("get")))

    def on_receive(self, message: Any) -> Any:
        if message == "received":
            return list(self.received)
        if isinstance(message, Replied):
            # Settled before it was told: outcome() reads it without waiting.
            self.received.append((message.order, outcome(message.future)))
            if message.order == "get":
                self.controller.tell(StopProcess(self.reply_to("stop")))
            return None
        self.received.append(message)
        return None


@pytest.fixture
def controller() -> Iterator[tuple[ProcessController, FakeFactory]]:
    factory = FakeFactory()
    ctl = ProcessController.start(
        ["fake-worker"], name="driven", process_factory=factory,
        restart=RestartPolicy(mode="temporary"),
    )
    yield ctl, factory
    ctl.close(timeout=WAIT)


def replies(client: pykka.ActorRef[Any]) -> list[tuple[str, Any]]:
    received = client.ask("received", timeout=WAIT)
    return [item for item in received if isinstance(item, tuple)]


def wait_until(condition: Any) -> None:
    """Ask again until ``condition()`` holds (each ask is bounded; a broken test fails)."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        time.sleep(0.01)


def test_an_actor_drives_the_controller_with_messages(
    controller: tuple[ProcessController, FakeFactory],
) -> None:
    ctl, factory = controller
    assert isinstance(ctl.actor_ref, pykka.ActorRef)
    client = Client.start(ctl.actor_ref)
    factory.wait_for_launches(1)
    # The order is out, the child not ready: the client still answers, with no reply yet.
    assert replies(client) == []

    connection = FakeConnection(1)
    ctl.actor_ref.tell(ChildProcessCreated(1, 4001, connection))
    wait_until(lambda: [order for order, _ in replies(client)] == ["get"])
    assert replies(client) == [("get", connection)]

    # The client's StopProcess reaches the fake process actor as StopChild.
    process = factory.launches[0].ref
    wait_until(lambda: StopChild(1) in process.ask("received", timeout=WAIT))
    reason = TerminationReason(pid=4001, exit_status=0, requested=True, how="clean")
    ctl.actor_ref.tell(ChildProcessTerminated(1, reason))
    wait_until(lambda: len(replies(client)) == 2)
    assert replies(client)[1] == ("stop", StopResult("clean", reason))

    events = client.ask("received", timeout=WAIT)
    started = [e for e in events if isinstance(e, ProcessStarted)]
    assert started == [ProcessStarted("driven", 1, 4001)]
    modes = [(e.old, e.new) for e in events if isinstance(e, ModeChanged)]
    assert modes == [("stopped", "starting"), ("starting", "ready"), ("ready", "stopping"),
                     ("stopping", "stopped")]
    client.stop()


def test_a_closed_controller_refuses_messages(
    controller: tuple[ProcessController, FakeFactory],
) -> None:
    ctl, _ = controller
    ref = ctl.actor_ref
    ctl.close(timeout=WAIT)
    with pytest.raises(pykka.ActorDeadError):
        ref.tell(GetProcess(ReplyFuture()))
