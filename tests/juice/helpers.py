"""Helpers for the codec tests: feeding a parser in the ways a stream can arrive."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from juicectl.juice import Box, BoxParser, Limits, ProtocolError, normalize_key, wire_key

#: Examples per hypothesis test in the normal suite; raise it for a long fuzz run, e.g.
#: ``JUICECTL_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/juice --timeout=0``.
EXAMPLES = int(os.environ.get("JUICECTL_FUZZ_EXAMPLES", "100"))

#: ``differing_executors``: a mutation run (``python3 tasks.py mutate``) runs the suite several
#: times in one process, so each test method looks called from several instances.
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)

# Text without CR or LF, then values: such pieces joined by CRLF (the only line break a
# value may hold).
line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"))
values = st.lists(line_text, min_size=1, max_size=4).map("\r\n".join)


def _normal_key(key: str) -> bool:
    return (
        bool(key)
        and ": " not in key
        and not key.startswith(" ")
        and key not in ("body", "_length")
        and normalize_key(wire_key(key)) == key
    )


keys = st.one_of(
    st.from_regex(r"\A_?[a-z][a-z0-9_]{0,15}\Z"),
    line_text.map(normalize_key),
).filter(_normal_key)

Content = tuple[dict[str, str], bytes | None]


def content(boxes: Iterable[Box]) -> list[Content]:
    """What a list of boxes holds, in a form that compares fields and bodies exactly."""
    return [(dict(box), box.body) for box in boxes]


def feed_whole(data: bytes, limits: Limits | None = None) -> list[Box]:
    """All of ``data`` in one call, then end of stream."""
    parser = BoxParser(limits)
    boxes = parser.feed(data)
    boxes += parser.feed(b"")
    return boxes


def feed_bytewise(data: bytes, limits: Limits | None = None) -> list[Box]:
    """One byte per call, then end of stream."""
    parser = BoxParser(limits)
    boxes: list[Box] = []
    for index in range(len(data)):
        boxes += parser.feed(data[index : index + 1])
    boxes += parser.feed(b"")
    return boxes


def feed_split(data: bytes, cuts: Iterable[int], limits: Limits | None = None) -> list[Box]:
    """``data`` cut at the given offsets (empty pieces skipped), then end of stream."""
    parser = BoxParser(limits)
    boxes: list[Box] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        if cut > start:
            boxes += parser.feed(data[start:cut])
            start = cut
    boxes += parser.feed(b"")
    return boxes


FEEDERS: dict[str, Callable[[bytes], list[Box]]] = {
    "whole": feed_whole,
    "bytewise": feed_bytewise,
    "halves": lambda data: feed_split(data, [len(data) // 2]),
    "sevens": lambda data: feed_split(data, range(7, len(data), 7)),
}


Outcome = tuple[list[Content], type[ProtocolError] | None]


def feed_random(data: bytes, seed: int, limits: Limits | None = None) -> list[Box]:
    """``data`` cut at a few random offsets (the same for the same seed), then end of stream."""
    rng = random.Random(seed)
    count = rng.randint(1, 12) if len(data) > 1 else 0
    return feed_split(data, [rng.randrange(1, len(data)) for _ in range(count)], limits)


def _attempt(feed: Callable[[], list[Box]]) -> tuple[Outcome, str]:
    try:
        return (content(feed()), None), ""
    except ProtocolError as exc:
        return ([], type(exc)), str(exc)


def outcome(feed: Callable[[], list[Box]]) -> Outcome:
    """The boxes a feeding gives, or the class of the error it raises (with no boxes)."""
    return _attempt(feed)[0]


def outcomes(data: bytes, limits: Limits | None = None, seeds: int = 4) -> dict[str, Outcome]:
    """What ``data`` gives fed whole, byte by byte and in random chunks (``seeds`` cuttings).

    An error must also say the same, however the bytes came: that is checked here.
    """
    feeds: dict[str, Callable[[], list[Box]]] = {
        "whole": lambda: feed_whole(data, limits),
        "bytewise": lambda: feed_bytewise(data, limits),
    }
    for seed in range(seeds):
        feeds[f"random {seed}"] = lambda seed=seed: feed_random(data, seed, limits)
    attempts = {name: _attempt(feed) for name, feed in feeds.items()}
    messages = {name: message for name, (_, message) in attempts.items()}
    assert len(set(messages.values())) == 1, f"the error depends on how bytes arrive: {messages}"
    return {name: result for name, (result, _) in attempts.items()}
