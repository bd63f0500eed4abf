"""The snippets of a documentation page, read as a reader would use them.

Conventions for fenced blocks (an HTML comment on the last non-blank line before a fence is
its marker; it does not show in the rendered page):

* A ``python`` block is a program of its own, run as a script (``__name__ == "__main__"``) in
  the page's directory, unless it is marked ``<!-- continues -->``: then it runs in the same
  process and namespace as the block before it, as the rest of one program.
* A ``python`` block whose first line is a comment naming a file (``# my_app/worker.py``) is
  a file: it is saved under that name in the page's directory, where the programs run and
  the children they start import it, and it is checked by importing it.
* ``<!-- pytest -->``: the block is a test module (named by its first line, or not); it is
  run by pytest, and every test in it must pass.
* ``<!-- not-run -->``: a fragment that cannot run alone; use sparingly.
* Functions named ``test_*`` that a program defines are called once its block has run
  (``tmp_path`` is given to those that ask for it).
* In ``sh``/``console`` blocks, each command that runs ``juicectl`` (a line, or a ``$ ``
  line of a session) is run from the page's directory, with no stdin and a timeout. The
  lines a session shows after a command are its expected stdout; ``...`` in them stands for
  anything. Placeholders (``[--option]``, ``CHILD_COMMAND...``) and commands that need a
  checkout (``.venv/...``, ``python3 tasks.py``) or a network (``pip``) are not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<marker>not-run|pytest|continues)\s*-->\s*$")
MODULE_LINE = re.compile(r"^#\s*(?P<path>[\w./-]+\.py)\s*$")
SHELL_LANGS = ("sh", "shell", "bash", "console")
RUNS_JUICECTL = re.compile(r"(^|[|;&]\s*)juicectl\s|^python3? -m juicectl\s")
NOT_RUNNABLE = re.compile(r"\[-|\bCHILD_COMMAND\b|^\.venv/|^python3 tasks\.py|^pip\b")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: Path
    line: int
    """The line number (1-based) of the block's first line of code."""
    lang: str
    code: str
    marker: str | None
    """``"not-run"``, ``"pytest"``, ``"continues"`` or None."""

    @property
    def file_name(self) -> str | None:
        """The file a python block is saved as, if its first line names one."""
        first = self.code.splitlines()[0] if self.code.strip() else ""
        match = MODULE_LINE.match(first)
        return match.group("path") if match else None

    @property
    def module(self) -> str:
        """The module a file block is imported as (``my_app/worker.py``: ``my_app.worker``)."""
        assert self.file_name is not None
        return self.file_name.removesuffix(".py").replace("/", ".")


@dataclass
class Program:
    """Python blocks that run in one process, in order: a block and those continuing it."""

    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True)
class ShellCommand:
    """A command of a shell block, and the stdout a session shows for it (None: not shown)."""

    page: Path
    line: int
    command: str
    expected: tuple[str, ...] | None

    def matches(self, stdout: str) -> bool:
        """Whether ``stdout`` is what the page shows (``...`` matches anything)."""
        assert self.expected is not None
        lines = stdout.splitlines()
        return len(lines) == len(self.expected) and all(
            re.fullmatch(".*".join(re.escape(part) for part in want.split("...")), got)
            for want, got in zip(self.expected, lines, strict=True)
        )


def blocks(page: Path) -> list[Block]:
    """Every fenced block of a Markdown page that has a language, with its marker."""
    lines = page.read_text("utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match or not match.group("lang"):
            index += 1
            continue
        indent, lang = len(match.group("indent")), match.group("lang")
        start = end = index + 1
        while end < len(lines) and not re.match(r"^ *```\s*$", lines[end]):
            end += 1
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.match(previous)
        code = "\n".join(line[indent:] for line in lines[start:end]) + "\n"
        found.append(Block(page, start + 1, lang, code, marker.group("marker") if marker else None))
        index = end + 1
    return found


def python_blocks(page: Path) -> list[Block]:
    return [block for block in blocks(page) if block.lang in ("python", "py")]


def programs(page: Path) -> list[Program]:
    """The page's programs, in order; file, pytest and not-run blocks are not among them."""
    found: list[Program] = []
    for block in python_blocks(page):
        if block.marker in ("not-run", "pytest") or block.file_name is not None:
            continue
        if block.marker == "continues":
            if not found:
                raise ValueError(f"{page.name}:{block.line}: continues no block")
            found[-1].blocks.append(block)
        else:
            found.append(Program([block]))
    return found


def files(page: Path) -> list[Block]:
    """The page's file blocks (saved in the page's directory), pytest modules included."""
    return [block for block in python_blocks(page)
            if block.marker != "not-run" and block.file_name is not None]


def pytest_modules(page: Path) -> list[Block]:
    return [block for block in python_blocks(page) if block.marker == "pytest"]


def _joined(code: str) -> list[tuple[int, str]]:
    """(offset, line) of a shell block, with backslash-continued lines joined."""
    joined: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for offset, raw in enumerate(code.splitlines()):
        if not pending:
            start = offset
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        joined.append((start, pending + raw))
        pending = ""
    return joined


def shell_commands(page: Path) -> list[ShellCommand]:
    """The ``juicectl`` commands of the page's shell blocks that can run as written."""
    found: list[ShellCommand] = []
    for block in blocks(page):
        if block.lang not in SHELL_LANGS or block.marker == "not-run":
            continue
        lines = _joined(block.code)
        session = any(line.startswith("$ ") for _, line in lines)
        index = 0
        while index < len(lines):
            offset, line = lines[index]
            index += 1
            if session:
                if not line.startswith("$ "):
                    continue
                command = line[2:]
                shown = []
                while index < len(lines) and not lines[index][1].startswith("$ "):
                    shown.append(lines[index][1])
                    index += 1
                expected: tuple[str, ...] | None = tuple(shown)
            else:
                command, expected = line, None
            command = command.split("  #", 1)[0].strip()
            if not command or command.startswith("#"):
                continue
            if RUNS_JUICECTL.search(command) and not NOT_RUNNABLE.search(command):
                found.append(ShellCommand(page, block.line + offset, command, expected))
    return found
