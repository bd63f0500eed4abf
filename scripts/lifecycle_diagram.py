#!/usr/bin/env python3
"""Write the state diagram of docs/lifecycle.md from the controller's ``TRANSITIONS``.

    python3 scripts/lifecycle_diagram.py          rewrite the diagram between the markers
    python3 scripts/lifecycle_diagram.py --check  exit 1 if the diagram there is stale

The diagram is a Mermaid block between two HTML comments of the page (``START`` and
``END``); everything else on the page is left as it is. It shows every change of mode: one
arrow per (mode, next mode), labelled with the messages that make it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "lifecycle.md"
START = "<!-- lifecycle-diagram: written by scripts/lifecycle_diagram.py from TRANSITIONS -->"
END = "<!-- end of lifecycle-diagram -->"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's juicectl, when run as a script

from juicectl.actors.controller import TRANSITIONS, Mode  # noqa: E402


def diagram() -> str:
    """The Mermaid block, from ``TRANSITIONS``: modes in their enum's order."""
    order = list(Mode)
    arrows: dict[tuple[Mode, Mode], list[str]] = {}
    for (mode, message), rows in TRANSITIONS.items():
        for row in rows:
            if row.next is mode:
                continue
            labels = arrows.setdefault((mode, row.next), [])
            if message.__name__ not in labels:
                labels.append(message.__name__)
    lines = ["```mermaid", "stateDiagram-v2", "    [*] --> stopped"]
    for old, new in sorted(arrows, key=lambda pair: (order.index(pair[0]), order.index(pair[1]))):
        lines.append(f"    {old.value} --> {new.value}: {', '.join(arrows[(old, new)])}")
    # Not a mode: a closed controller's actor stops (once no child is left, so in stopped).
    lines.append("    stopped --> [*]: close (the actor stops)")
    lines.append("```")
    return "\n".join(lines) + "\n"


def split(text: str) -> tuple[str, str, str]:
    """The page through ``START``, the diagram, and the rest from ``END`` on.

    Raises:
        ValueError: a marker is missing.
    """
    head, marker, rest = text.partition(START + "\n")
    body, end, tail = rest.partition(END)
    if not marker or not end:
        raise ValueError(f"the markers {START!r} and {END!r} must both be on the page")
    return head + marker, body, end + tail


def main(argv: list[str] | None = None, doc: Path = DOC) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the diagram is stale")
    args = parser.parse_args(argv)
    try:
        head, body, tail = split(doc.read_text(encoding="utf-8"))
    except ValueError as error:
        print(f"{doc}: {error}", file=sys.stderr)
        return 2
    wanted = diagram()
    if body == wanted:
        return 0
    if args.check:
        print(f"{doc}: the state diagram is stale; run python3 scripts/lifecycle_diagram.py")
        return 1
    doc.write_text(head + wanted + tail, encoding="utf-8")
    print(f"{doc}: state diagram written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
