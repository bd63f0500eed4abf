#!/usr/bin/env python3
"""The long chaos run: callers under load while the child is SIGKILLed at random.

Run on demand (never collected by pytest)::

    .venv/bin/python benchmarks/chaos.py --duration 300 --callers 16

Prints the figures (requests sent, kills, answered, failed transiently, lost, crossed,
leaks) and exits with status 1 if a promise broke: a request lost or crossed, an error other
than ``ProcessUnavailable``, or a thread, file descriptor or child left over after
``close()``. The engine is ``tests/chaos/engine.py``; the suite runs a few seconds of it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from tests.chaos.engine import BAD_EVENTS, describe_failure, run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--callers", type=int, default=16, help="caller threads (default 16)")
    parser.add_argument("--kill-min", type=float, default=0.05, help="seconds between kills, min")
    parser.add_argument("--kill-max", type=float, default=0.5, help="seconds between kills, max")
    parser.add_argument("--max-burst", type=int, default=8, help="pipelined requests per burst")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--close-under-fire",
        action="store_true",
        help="close() while callers and killer are still at work",
    )
    args = parser.parse_args(argv)

    # Count every log event (the library logs through structlog) instead of printing them.
    events: Counter[str] = Counter()

    bad_entries: list[str] = []

    def count(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
        event = str(event_dict.get("event"))
        events[event] += 1
        if event in BAD_EVENTS and len(bad_entries) < 5:
            # Keep the first few whole, traceback included, to say what went wrong.
            bad_entries.append(
                structlog.dev.ConsoleRenderer(colors=False)(
                    _logger,
                    _method,
                    structlog.processors.format_exc_info(_logger, _method, dict(event_dict)),
                )
            )
        raise structlog.DropEvent

    structlog.configure(
        processors=[count],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )
    report = run_chaos(
        duration=args.duration,
        callers=args.callers,
        kill_interval=(args.kill_min, args.kill_max),
        max_burst=args.max_burst,
        seed=args.seed,
        close_under_fire=args.close_under_fire,
    )
    print(describe_failure(report))
    bad = {event: n for event, n in events.items() if event in BAD_EVENTS}
    print(f"bad log events           {sum(bad.values())} {bad or ''}")
    for entry in bad_entries:
        print(entry)
    notable = (
        "write_failed",
        "answer_after_close",
        "startup_failed",
        "restart_scheduled",
        "stale_message",
    )
    print("log events               " + ", ".join(f"{e}={events[e]}" for e in notable))
    ok = report.ok and not bad
    print("RESULT                   " + ("every promise held" if ok else "A PROMISE BROKE"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
