"""docs/lifecycle.md and the code say the same: its tables are ``TRANSITIONS``, row by row, and
its state diagram is the one ``scripts/lifecycle_diagram.py`` draws from it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from juicectl.actors.controller import TRANSITIONS, Guard, Mode

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "lifecycle.md"
SCRIPT = ROOT / "scripts" / "lifecycle_diagram.py"

Rows = dict[tuple[str, str], list[tuple[str | None, str]]]
"""(mode, input) -> its rows in order, each (guard or None, next mode)."""

HEADING = re.compile(r"^### `(?P<input>\w+)`")
CODE = re.compile(r"`([^`]*)`")


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def documented_rows(text: str) -> Rows:
    """The rows of the tables under each "### `Input`" heading of the transition section."""
    section = text.split("## The transition table, as implemented", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows: Rows = {}
    message = None
    header: list[str] = []
    for line in section.splitlines():
        heading = HEADING.match(line)
        if heading:
            message, header = heading["input"], []
            continue
        if not line.startswith("|"):
            header = []  # a table ends at the first line that is not one of its rows
            continue
        if message is None:
            continue  # the guards' table, before the first input
        row = cells(line)
        if not header:
            header = row
            assert header[:3] == ["Mode", "When", "Next"], f"### `{message}`: {header}"
            continue
        if set(line) <= set("|-: "):
            continue
        mode_cell, when_cell, next_cell = row[:3]
        modes = [m.value for m in Mode] if mode_cell == "any" else CODE.findall(mode_cell)
        assert modes, f"### `{message}`: no mode in {line!r}"
        guards = CODE.findall(when_cell)
        assert len(guards) <= 1, f"### `{message}`: one guard at most: {line!r}"
        for mode in modes:
            if next_cell == "unchanged":
                new = mode
            else:
                (new,) = CODE.findall(next_cell)
            rows.setdefault((mode, message), []).append((guards[0] if guards else None, new))
    return rows


def table_rows() -> Rows:
    return {
        (mode.value, message.__name__): [
            (None if row.when is None else row.when.value, row.next.value) for row in rows
        ]
        for (mode, message), rows in TRANSITIONS.items()
    }


def test_the_documented_tables_are_the_transitions_row_by_row() -> None:
    documented = documented_rows(DOC.read_text(encoding="utf-8"))
    implemented = table_rows()
    assert sorted(documented) == sorted(implemented)
    for key, rows in implemented.items():
        assert documented[key] == rows, key


def test_every_guard_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for guard in Guard:
        assert f"| `{guard.value}`" in text, guard


def test_every_row_list_ends_with_a_row_that_always_holds() -> None:
    for key, rows in TRANSITIONS.items():
        assert rows, key
        assert rows[-1].when is None, key
        assert all(row.when is not None for row in rows[:-1]), key


def test_the_parser_notices_a_wrong_next_mode() -> None:
    # The check above can fail: a doc that says another next mode differs from the table.
    text = DOC.read_text(encoding="utf-8")
    broken = text.replace(
        "| `ready`         |      | `stopping`      |",
        "| `ready`         |      | `stopped`       |",
        1,
    )
    assert broken != text
    assert documented_rows(broken) != table_rows()


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lifecycle_diagram", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_diagram_is_the_one_drawn_from_transitions() -> None:
    script = load_script()
    assert script.main(["--check"], doc=DOC) == 0


def test_the_diagram_shows_every_change_of_mode() -> None:
    script = load_script()
    drawn = script.diagram()
    assert drawn.startswith("```mermaid\nstateDiagram-v2\n")
    for (mode, message), rows in TRANSITIONS.items():
        for row in rows:
            if row.next is not mode:
                arrow = re.search(rf"^    {mode.value} --> {row.next.value}: (.*)$", drawn, re.M)
                assert arrow and message.__name__ in arrow[1].split(", "), (mode, message)
    # and nothing else: as many arrows as distinct changes, plus the way in and the way out
    changes = {(m, r.next) for (m, _), rows in TRANSITIONS.items() for r in rows if r.next is not m}
    assert drawn.count(" --> ") == len(changes) + 2


def test_a_stale_diagram_is_found_and_rewritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = load_script()
    doc = tmp_path / "lifecycle.md"
    text = DOC.read_text(encoding="utf-8")
    stale = text.replace("    ready --> stopping: StopProcess, _Close\n", "")
    assert stale != text
    doc.write_text(stale, encoding="utf-8")
    assert script.main(["--check"], doc=doc) == 1
    assert "stale" in capsys.readouterr().out
    assert doc.read_text(encoding="utf-8") == stale  # --check writes nothing
    assert script.main([], doc=doc) == 0
    assert doc.read_text(encoding="utf-8") == text
    doc.write_text(text.replace(script.END, ""), encoding="utf-8")
    assert script.main(["--check"], doc=doc) == 2
