"""Who reads: the table of states and triggers is data, the code moves by it, and the module's
docstring says the same thing as the data."""

from __future__ import annotations

import re

import pytest
import structlog

from juicectl import _reading as reading_module
from juicectl._reading import TRANSITIONS, ReadRole, Role, Trigger

PAIRS = [(role, trigger) for role in Role for trigger in Trigger]


def docstring_table(header: str) -> list[list[str]]:
    """The rows of the markdown table in ``_reading``'s docstring whose header starts so."""
    doc = reading_module.__doc__ or ""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_docstring_table_of_triggers_is_transitions() -> None:
    rows = docstring_table("| state | trigger | next state |")
    documented = {(Role(state), Trigger(trigger)): Role(next_state)
                  for state, trigger, next_state, _ in rows}
    assert documented == TRANSITIONS


def test_the_docstring_table_of_states_names_every_state() -> None:
    rows = docstring_table("| state | who reads |")
    assert [Role(state) for state, _ in rows] == list(Role)


def test_every_state_and_trigger_takes_part() -> None:
    assert {role for role, _ in TRANSITIONS} | set(TRANSITIONS.values()) == set(Role)
    assert {trigger for _, trigger in TRANSITIONS} == set(Trigger)
    # Once ended, nothing moves the role again.
    assert not [pair for pair in TRANSITIONS if pair[0] is Role.ENDED]


@pytest.mark.parametrize(("role", "trigger"), PAIRS, ids=lambda v: v.value)
def test_the_role_moves_by_the_table_and_only_by_it(role: Role, trigger: Trigger) -> None:
    reading = ReadRole(
        lambda data: None, busy_poll=0, log=structlog.get_logger(), outstanding=lambda: 1
    )
    reading.role = role
    expected = TRANSITIONS.get((role, trigger))
    with reading._lock:
        if expected is None:
            with pytest.raises(RuntimeError, match=re.escape(
                f"who reads: {trigger.value!r} cannot happen in {role.value!r}"
            )):
                reading._fire(trigger)
            assert reading.role is role
        else:
            reading._fire(trigger)
            assert reading.role is expected


def test_a_new_role_belongs_to_the_reader_thread() -> None:
    # Until serve() runs, callers wait rather than read: nobody could wake one that read.
    reading = ReadRole(
        lambda data: None, busy_poll=0, log=structlog.get_logger(), outstanding=lambda: 1
    )
    assert reading.role is Role.READER
    assert reading.watchers == 0
