"""``juicectl call -- CHILD... COMMAND key=value...``: one request, its answer as JSON."""

from __future__ import annotations

import re
from collections.abc import Sequence

from juicectl._cli._common import (
    Failure,
    Session,
    Timeouts,
    UsageError,
    parse_request,
    to_json,
    write_line,
)
from juicectl._cli._interrupts import EXIT_INTERRUPTED, Interrupts
from juicectl.juice import Command, command_key

_KEY_VALUE = re.compile(r"[A-Za-z_][\w-]*=", re.ASCII)
_NAME = re.compile(r"[A-Za-z_]\w*\Z", re.ASCII)


def split_call_words(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """``CHILD... COMMAND key=value...`` -> (child argv, [COMMAND, key=value...]).

    The command is the last word that is not ``key=value``.
    """
    end = len(words)
    while end > 0 and _KEY_VALUE.match(words[end - 1]):
        end -= 1
    if end == 0:
        raise UsageError("no command given: expected CHILD_COMMAND... COMMAND [key=value ...]")
    if end == 1:
        raise UsageError("no child command given: expected CHILD_COMMAND... COMMAND")
    return list(words[: end - 1]), list(words[end - 1 :])


def bare_argument_hint(
    argv: Sequence[str], request: Sequence[str], commands: dict[str, type[Command]]
) -> tuple[str, bool] | None:
    """``... Echo value``: the command is taken to be ``value`` and ``Echo`` joins the child's
    command line. Returns (a hint, whether it is certain) when the words look like that."""
    if len(request) != 1 or len(argv) < 2:
        return None
    before, word = argv[-1], request[0]
    if not (_NAME.match(before) and _NAME.match(word)):
        return None
    hint = f"if {before} is the command, its arguments are key=value: {before} {word}=..."
    return hint, command_key(before) in commands


def run_call(
    words: list[str],
    commands: dict[str, type[Command]],
    timeouts: Timeouts,
    interrupts: Interrupts,
) -> int:
    argv, request = split_call_words(words)
    hint = bare_argument_hint(argv, request, commands)
    if hint is not None and hint[1]:
        raise UsageError(hint[0])
    command, arguments = parse_request(request, commands)
    session = Session(argv, timeouts, interrupts)
    try:
        connection = session.connect()
        answer = session.send(connection, command, arguments)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED  # the handler has said so; close() stops the child
    except Failure as failure:
        if hint is not None:
            raise Failure(f"{failure} ({hint[0]})", ended=failure.ended) from None
        raise
    finally:
        session.close()
    write_line(to_json(answer))
    return EXIT_INTERRUPTED if interrupts.interrupted else 0
