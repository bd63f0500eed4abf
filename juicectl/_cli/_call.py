"""``juicectl call -- CHILD... COMMAND key=value...``: one request, its answer as JSON."""

from __future__ import annotations

import re
from collections.abc import Sequence

from juicectl._cli._common import (
    Timeouts,
    UsageError,
    closing,
    connect,
    parse_request,
    send,
    start_controller,
    to_json,
)
from juicectl.juice import Command

_KEY_VALUE = re.compile(r"[A-Za-z_][\w-]*=", re.ASCII)


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


def run_call(words: list[str], commands: dict[str, type[Command]], timeouts: Timeouts) -> int:
    argv, request = split_call_words(words)
    command, arguments = parse_request(request, commands)
    with closing(start_controller(argv, timeouts)) as controller:
        connection = connect(controller, timeouts)
        answer = send(connection, command, arguments, timeouts.answer)
    print(to_json(answer), flush=True)
    return 0
