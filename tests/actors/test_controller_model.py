"""A stateful test: random message sequences against a plain model of the seed's table.

The model is the seed's table written as plainly as possible, with the flaws fixed the way
``docs/lifecycle.md`` says. After every step the controller's mode must equal the model's,
every future the model has resolved must hold exactly the model's outcome, and every future
the model still holds must still be pending. The policy is ``temporary`` (the seed's: no
automatic restarts), so the model needs no clock.
"""

from __future__ import annotations

from typing import Any

from controller_harness import FakeConnection, Harness, outcome
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from juicectl.exceptions import ProcessUnavailable
from juicectl.messages import StopChild, StopResult, TerminationReason
from juicectl.policy import RestartPolicy

UNAVAILABLE = ProcessUnavailable
"""Expected outcome: failed with ``ProcessUnavailable``."""

offsets = st.sampled_from([0, 0, 0, -1, 1, 2])
"""Mostly the current generation; sometimes an older or an unknown one."""

reasons = st.builds(
    lambda how, status, signal: TerminationReason(
        pid=None,
        exit_status=status if how in ("clean", "exited") else None,
        signal=signal if how in ("terminated", "killed") else None,
        how=how,
    ),
    st.sampled_from(["clean", "exited", "terminated", "killed", "startup_timeout"]),
    st.integers(0, 3),
    st.sampled_from([9, 15]),
)


class SeedModel:
    """The seed's table, fixed: a plain object with no threads and no actors."""

    def __init__(self) -> None:
        self.mode = "stopped"
        self.generation = 0
        self.stop_requested = False
        self.get_waiters: list[Any] = []
        self.stop_waiters: list[Any] = []
        self.expected: dict[int, tuple[Any, Any]] = {}
        """id(future) -> (future, expected outcome) for every future already settled."""
        self.stop_children: dict[int, int] = {}
        self.started_hook = 0
        self.terminated_hook = 0

    def settle(self, future: Any, expected: Any) -> None:
        self.expected[id(future)] = (future, expected)

    def get_process(self, future: Any) -> None:
        if self.mode == "stopped":
            self.generation += 1
            self.stop_requested = False
            self.mode = "starting"
            self.get_waiters.append(future)
        elif self.mode == "starting":
            self.get_waiters.append(future)
        elif self.mode == "ready":
            self.settle(future, FakeConnection(self.generation))
        else:
            self.settle(future, UNAVAILABLE)

    def stop_process(self, future: Any) -> None:
        if self.mode == "stopped":
            self.settle(future, StopResult("not_running"))
            return
        self.stop_requested = True
        self.stop_waiters.append(future)
        if self.mode == "starting":
            self.mode = "waiting_ready"
        elif self.mode == "ready":
            self.mode = "stopping"
            self.stop_children[self.generation] = self.stop_children.get(self.generation, 0) + 1

    def created(self, generation: int) -> None:
        if generation != self.generation or generation == 0:
            return  # stale: ignored
        if self.mode == "starting":
            self.mode = "ready"
            self.started_hook += 1
            for future in self.get_waiters:
                self.settle(future, FakeConnection(generation))
            self.get_waiters = []
        elif self.mode == "waiting_ready":
            self.mode = "stopping"
            for future in self.get_waiters:
                self.settle(future, UNAVAILABLE)
            self.get_waiters = []
            self.stop_children[generation] = self.stop_children.get(generation, 0) + 1

    def terminated(self, generation: int, reason: TerminationReason) -> None:
        if generation != self.generation or generation == 0 or self.mode == "stopped":
            return
        self.mode = "stopped"
        for future in self.get_waiters:
            self.settle(future, UNAVAILABLE)
        for future in self.stop_waiters:
            self.settle(future, StopResult(reason.how, reason))
        self.get_waiters, self.stop_waiters = [], []
        if not self.stop_requested:
            self.terminated_hook += 1


class ControllerAgainstTheSeed(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(policy=RestartPolicy(mode="temporary"))
        self.model = SeedModel()

    @rule()
    def get_process(self) -> None:
        self.model.get_process(self.h.get())

    @rule()
    def stop_process(self) -> None:
        self.model.stop_process(self.h.stop())

    @rule(offset=offsets)
    def child_created(self, offset: int) -> None:
        generation = self.model.generation + offset
        self.h.created(generation=generation)
        self.model.created(generation)

    @rule(offset=offsets, reason=reasons)
    def child_terminated(self, offset: int, reason: TerminationReason) -> None:
        generation = self.model.generation + offset
        self.h.ref.tell(_terminated(generation, reason))
        self.model.terminated(generation, reason)

    @invariant()
    def agrees_with_the_model(self) -> None:
        h, model = self.h, self.model
        assert h.sync() == model.mode
        for future, expected in model.expected.values():
            actual = outcome(future)
            if expected is UNAVAILABLE:
                assert isinstance(actual, ProcessUnavailable), actual
            else:
                assert actual == expected
        for future in model.get_waiters + model.stop_waiters:
            assert outcome(future) == "pending"
        assert len(h.factory.launches) == model.generation
        assert h.on_startup.calls == model.started_hook
        assert h.on_termination.calls == model.terminated_hook
        if model.generation:
            assert h.stop_children() == [StopChild(model.generation)] * model.stop_children.get(
                model.generation, 0
            )

    def teardown(self) -> None:
        self.h.ref.stop()


def _terminated(generation: int, reason: TerminationReason) -> Any:
    from juicectl.messages import ChildProcessTerminated

    return ChildProcessTerminated(generation, reason)


ControllerAgainstTheSeed.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None
)
TestControllerAgainstTheSeed = ControllerAgainstTheSeed.TestCase
