"""The codec's one call table and name matcher, shared by the parent's connection and the
child runtime: tags, popping, draining, the memory of given-up tags, what an answer means, and
how a ``-Command`` name is matched."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from juicectl.juice import (
    LATE_MEMORY,
    Answer,
    ArgumentError,
    Box,
    BoxParser,
    Command,
    CommandMatcher,
    ErrorAnswer,
    Integer,
    RemoteJuiceError,
    RequestTable,
    String,
    UnhandledRemoteJuiceError,
    answer_bytes,
    error_bytes,
    loose_key,
)


class Echo(Command):
    arguments = [("value", String())]
    response = [("value", String())]


class NotFound(Exception):
    pass


class Lookup(Command):
    arguments = [("key", String())]
    response = [("count", Integer())]
    errors: ClassVar[dict[type[BaseException], str]] = {NotFound: "NOT_FOUND"}


class Strict(Command):
    """An override that refuses every answer."""

    response = [("value", String())]

    @classmethod
    def parse_response(cls, box: Box) -> dict[str, Any]:
        raise LookupError(f"refused {sorted(box)}")


def received(data: bytes) -> Box:
    [box] = BoxParser().feed(data)
    return box


# --- RequestTable -------------------------------------------------------------------------


def test_open_gives_fresh_tags_in_lowercase_hex() -> None:
    table: RequestTable[str] = RequestTable()
    tags = [table.open(Echo, f"waiter {n}") for n in range(12)]
    assert tags == ["1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c"]
    assert len(table) == 12 and "a" in table
    assert table.next_tag() == "d"  # the same counter as open()


def test_pop_returns_the_command_and_waiter_once() -> None:
    table: RequestTable[str] = RequestTable()
    tag = table.open(Echo, "mine")
    assert table.pop(tag) == (Echo, "mine")
    assert table.pop(tag) is None
    assert not table.was_late(tag)  # answered, not given up on


def test_a_given_up_tag_is_remembered_as_late_once() -> None:
    table: RequestTable[str] = RequestTable()
    tag = table.open(Echo, "timed out")
    assert table.give_up(tag) == (Echo, "timed out")
    assert table.pop(tag) is None
    assert table.was_late(tag)
    assert not table.was_late(tag)  # a tag is answered once
    assert table.give_up(tag) is None  # nothing to give up any more


def test_the_late_memory_is_bounded() -> None:
    table: RequestTable[str] = RequestTable(late_memory=3)
    tags = [table.open(Echo, str(n)) for n in range(5)]
    for tag in tags:
        table.give_up(tag)
    assert [table.was_late(tag) for tag in tags] == [False, False, True, True, True]
    assert LATE_MEMORY == 1024


def test_drain_returns_every_waiter_and_empties_the_table() -> None:
    table: RequestTable[str] = RequestTable()
    for n in range(3):
        table.open(Echo, f"w{n}")
    assert table.drain() == ["w0", "w1", "w2"]
    assert len(table) == 0
    assert table.open(Echo, "next") == "4"  # tags are never reused


def test_add_refuses_a_tag_already_outstanding() -> None:
    table: RequestTable[str] = RequestTable()
    table.add("x", Echo, "first")
    with pytest.raises(ValueError, match="tag 'x' is already outstanding"):
        table.add("x", Echo, "second")


# --- answer_outcome -----------------------------------------------------------------------


def test_an_answer_as_received_gives_the_response_fields() -> None:
    box = received(answer_bytes("1", Box(value="hi")))
    assert answer_outcome_of(Echo, box) == {"value": "hi"}
    assert answer_outcome_of(Echo, Answer("1", Box(value="hi"))) == {"value": "hi"}


def test_an_error_answer_gives_the_declared_exception() -> None:
    outcome = answer_outcome_of(Lookup, ErrorAnswer("1", "NOT_FOUND", "no such key"))
    assert isinstance(outcome, NotFound) and str(outcome) == "no such key"
    unhandled = answer_outcome_of(Lookup, ErrorAnswer("1", "UNHANDLED", "boom"))
    assert isinstance(unhandled, UnhandledRemoteJuiceError)
    other = answer_outcome_of(Lookup, ErrorAnswer("1", "ODD", "odd"))
    assert isinstance(other, RemoteJuiceError) and other.code == "ODD"


def test_an_answer_that_does_not_parse_gives_the_parse_error() -> None:
    box = received(answer_bytes("1", Box(count="many")))
    assert isinstance(answer_outcome_of(Lookup, box), ArgumentError)
    missing = received(answer_bytes("2", Box()))
    assert isinstance(answer_outcome_of(Lookup, missing), ArgumentError)


def test_an_override_that_raises_gives_its_exception_and_sees_fields_only() -> None:
    box = received(answer_bytes("1", Box(value="v")))
    outcome = answer_outcome_of(Strict, box)
    assert isinstance(outcome, LookupError)
    assert str(outcome) == "refused ['value']"  # no '-Answer' header: the fields alone


def test_an_error_box_classified_and_its_outcome() -> None:
    from juicectl.juice import classify

    message = classify(received(error_bytes("3", "NOT_FOUND", "gone")))
    assert isinstance(message, ErrorAnswer)
    assert isinstance(answer_outcome_of(Lookup, message), NotFound)


def answer_outcome_of(command: type[Command], answer: Any) -> Any:
    from juicectl.juice import answer_outcome

    return answer_outcome(command, answer)


# --- CommandMatcher -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["SetStore", "setstore", "Set-Store", "SET_STORE", " set_store ", "Set_Store"]
)
def test_a_name_is_found_however_a_peer_spells_it(name: str) -> None:
    matcher = CommandMatcher({"Set-Store": "set", "Get": "get"})
    assert matcher.lookup(name) == "set"
    assert matcher.lookup("GET") == "get"
    assert matcher.lookup("Delete") is None


def test_names_that_differ_only_by_separators_match_exactly_never_loosely() -> None:
    matcher = CommandMatcher({"Set-Store": "dash", "SetStore": "joined"})
    assert matcher.lookup("set_store") == "dash"
    assert matcher.lookup("SETSTORE") == "joined"
    assert matcher.lookup("Set-Sto-Re") is None  # loosely both: ambiguous, so neither


def test_two_spellings_of_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="same command name"):
        CommandMatcher({"Set-Store": 1, "set_store": 2})


def test_names_are_remembered_as_sent_found_or_not_up_to_a_bound() -> None:
    matcher = CommandMatcher({"Shutdown": True})
    assert matcher.lookup("Echo") is None
    assert matcher.lookup("shut-down") is True
    assert matcher._seen == {"Echo": None, "shut-down": True}
    for n in range(1000):
        matcher.lookup(f"Name{n}")
    assert len(matcher._seen) == 256  # a hostile peer cannot grow it without bound
    assert matcher.lookup("SHUTDOWN") is True  # past the bound: still found, just not kept


def test_loose_key_drops_every_separator() -> None:
    assert loose_key(" Set-Store_Now ") == "setstorenow"
