"""Every Python example in the documentation runs.

Each page's fenced ``python`` blocks (docs/*.md and README.md) run in order, in one namespace,
as a reader pasting them one after another would; a block that raises fails the page's test,
and the traceback points at the page and line. Conventions:

* A block whose first line is a comment naming a file (``# my_app/worker.py``) is also written
  to that path in a scratch project directory, which is the working directory and is on
  ``sys.path`` while the page runs: later blocks, and the children they start, import it.
  ``examples/`` of this repository is reachable from there too.
* Functions named ``test_*`` that a block defines are then called (``tmp_path`` is given to
  those that ask for it), so an example test is run, not just defined.
* A block preceded by ``<!-- pytest -->`` is a complete test module: it is run by pytest in a
  subprocess, and every test in it must pass.
* A block preceded by ``<!-- not-run -->`` is a fragment that cannot run alone; use sparingly.

Blocks run with ``__name__ == "__docs__"``, so ``if __name__ == "__main__":`` parts do not.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<marker>not-run|pytest)\s*-->\s*$")
MODULE_LINE = re.compile(r"^#\s*(?P<path>[\w./-]+\.py)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced python block of a page."""

    page: Path
    line: int
    """The line number (1-based) of the block's first line of code."""
    code: str
    marker: str | None
    """``"not-run"``, ``"pytest"`` or None."""

    @property
    def module_path(self) -> str | None:
        first = self.code.splitlines()[0] if self.code.strip() else ""
        match = MODULE_LINE.match(first)
        return match.group("path") if match else None


def python_blocks(page: Path) -> list[Block]:
    """The fenced ``python`` blocks of a Markdown page, with their markers."""
    lines = page.read_text("utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match or not match.group("lang"):
            index += 1
            continue
        indent, lang = len(match.group("indent")), match.group("lang")
        start = index + 1
        end = start
        while end < len(lines) and not re.match(r"^ *```\s*$", lines[end]):
            end += 1
        if lang in ("python", "py"):
            previous = next(
                (lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), ""
            )
            marker = MARKER.match(previous)
            code = "\n".join(line[indent:] for line in lines[start:end]) + "\n"
            blocks.append(Block(page, start + 1, code, marker.group("marker") if marker else None))
        index = end + 1
    return blocks


def pages() -> list[Path]:
    found = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
    return [page for page in found if python_blocks(page)]


def run_pytest_block(block: Block, project: Path) -> None:
    name = block.module_path or f"test_docs_example_{block.line}.py"
    test_file = project / Path(name).name
    test_file.write_text(block.code, "utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(project), str(ROOT)]))
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(project), str(test_file)],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, (
        f"{block.page.name}:{block.line}: the example test module failed:\n"
        f"{result.stdout}\n{result.stderr}"
    )


def run_block(block: Block, namespace: dict[str, Any], project: Path) -> None:
    module_path = block.module_path
    if module_path is not None:
        target = project / module_path
        target.parent.mkdir(parents=True, exist_ok=True)
        for package in target.relative_to(project).parents:
            if str(package) != ".":
                (project / package / "__init__.py").touch()
        target.write_text(block.code, "utf-8")
    defined_before = set(namespace)
    # Padding keeps the page's line numbers in tracebacks.
    code = compile("\n" * (block.line - 1) + block.code, str(block.page), "exec")
    exec(code, namespace)
    for name in [n for n in namespace if n not in defined_before and n.startswith("test_")]:
        function = namespace[name]
        if not callable(function):
            continue
        arguments = {}
        for parameter in inspect.signature(function).parameters:
            if parameter != "tmp_path":
                raise AssertionError(
                    f"{block.page.name}:{block.line}: {name} asks for fixture {parameter!r}; "
                    "mark the block <!-- pytest --> to run it with pytest"
                )
            arguments["tmp_path"] = Path(tempfile.mkdtemp(dir=project))
        function(**arguments)


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_page_examples_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(project), str(ROOT)]))
    modules_before = set(sys.modules)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    try:
        for block in python_blocks(page):
            if block.marker == "not-run":
                continue
            if block.marker == "pytest":
                run_pytest_block(block, project)
                continue
            run_block(block, namespace, project)
    finally:
        # Forget the page's own modules, so another page may reuse the names.
        for name in set(sys.modules) - modules_before:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if module_file.startswith(str(project)):
                del sys.modules[name]


def test_block_extraction(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n```python\nx = 1\n```\n\n<!-- not-run -->\n```python\nfragment(\n```\n\n"
        "```sh\necho no\n```\n\n<!-- pytest -->\n\n```python\n# test_x.py\ndef test(): pass\n```\n"
        "- item:\n\n    ```python\n    y = 2\n    ```\n",
        "utf-8",
    )
    blocks = python_blocks(page)
    assert [(b.line, b.code, b.marker) for b in blocks] == [
        (4, "x = 1\n", None),
        (9, "fragment(\n", "not-run"),
        (19, "# test_x.py\ndef test(): pass\n", "pytest"),
        (25, "y = 2\n", None),
    ]
    assert blocks[2].module_path == "test_x.py"
    assert blocks[0].module_path is None


def test_a_failing_block_points_at_its_page_and_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nok = True\nraise ValueError('in the docs')\n```\n")
    [block] = python_blocks(page)
    with pytest.raises(ValueError, match="in the docs") as failure:
        run_block(block, {"__name__": "__docs__"}, tmp_path)
    last = failure.traceback[-1]
    assert (Path(str(last.path)).name, last.lineno + 1) == ("page.md", 5)
