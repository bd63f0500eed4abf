"""The process actor's lifecycle table keeps the promises the supervision tests check with
real children, as properties of the data: it only moves forward, every phase with a child
hears its exit, only a ready child is asked for ``Shutdown``, and nothing follows the
report."""

from __future__ import annotations

import itertools

import pytest

from juicectl.actors.process import LIFECYCLE, STOP_STEPS, Event, Phase

ORDER = list(Phase)
WITH_A_CHILD = [Phase.PROBING, Phase.READY, *STOP_STEPS]


@pytest.mark.parametrize(("row", "target"), LIFECYCLE.items(), ids=lambda v: str(v))
def test_a_child_only_moves_forward(row: tuple[Phase, Event], target: tuple[Phase, object]) -> None:
    (phase, event), (next_phase, _) = row, target
    assert ORDER.index(next_phase) >= ORDER.index(phase), (phase, event, next_phase)


@pytest.mark.parametrize("phase", WITH_A_CHILD, ids=lambda p: p.value)
def test_every_phase_with_a_child_hears_its_exit(phase: Phase) -> None:
    assert LIFECYCLE[(phase, Event.CHILD_EXITED)][0] is Phase.EXITED


@pytest.mark.parametrize("phase", [p for p in Phase if p is not Phase.REPORTED],
                         ids=lambda p: p.value)
def test_an_actor_stopped_from_outside_still_reports(phase: Phase) -> None:
    assert LIFECYCLE[(phase, Event.ACTOR_STOPPED)][0] is Phase.REPORTED


def test_only_a_ready_child_is_asked_for_shutdown() -> None:
    into_shutdown = {phase for (phase, _), (target, _) in LIFECYCLE.items()
                     if target is Phase.STOPPING_SHUTDOWN and phase is not target}
    assert into_shutdown == {Phase.READY}


def test_each_stop_step_leads_to_the_next() -> None:
    steps = list(STOP_STEPS)
    for step, following in itertools.pairwise(steps):
        assert LIFECYCLE[(step, Event.STEP_DUE)][0] is following
    assert (steps[-1], Event.STEP_DUE) not in LIFECYCLE  # after SIGKILL only the exit


def test_nothing_follows_the_report() -> None:
    assert [key for key in LIFECYCLE if key[0] is Phase.REPORTED] == []


def test_a_hurried_stop_skips_only_the_polite_steps() -> None:
    # Ctrl-C in close(): from Shutdown or close_stdin straight to SIGTERM; nowhere else.
    hurried = {phase: target for (phase, event), (target, _) in LIFECYCLE.items()
               if event is Event.HURRY_ASKED}
    assert hurried == {
        Phase.STOPPING_SHUTDOWN: Phase.STOPPING_SIGTERM,
        Phase.STOPPING_CLOSE_STDIN: Phase.STOPPING_SIGTERM,
    }
