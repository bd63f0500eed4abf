"""Every snippet of README.md and docs/ runs as written, against the installed wheel.

Each page gets a directory of its own, as a reader's project. Its file blocks are saved there
and imported, its programs run there as scripts, its test modules under pytest, and its
``juicectl`` command lines in a shell: all with the python of a bare virtualenv where only the
wheel (and the packages it needs) is installed, from that directory, with no variable that
points at the checkout. The conventions are in ``tests/docs/snippets.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.docs import snippets
from tests.packaging.wheel import Installed, clean_env, installed

TIMEOUT = 120
"""Seconds any one snippet may take (a bound, so a broken one fails instead of hanging)."""

DRIVER = Path(__file__).with_name("run_program.py")


def pages() -> list[Path]:
    found = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
    return [page for page in found
            if snippets.python_blocks(page) or snippets.shell_commands(page)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return installed(tmp_path_factory)


def where(block: snippets.Block) -> str:
    return f"{block.page.relative_to(ROOT)}:{block.line}"


def run(argv: list[str | Path], project: Path, env: dict[str, str],
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], cwd=project, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=TIMEOUT,
    )


def save_files(page: Path, project: Path) -> list[snippets.Block]:
    saved = snippets.files(page)
    for block in saved:
        assert block.file_name is not None
        target = project / block.file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code, "utf-8")
    return saved


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_page_snippets_run_against_the_wheel(
    page: Path, wheel: Installed, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = clean_env()
    env["PATH"] = os.pathsep.join([str(wheel.bin), env["PATH"]])  # python, juicectl: the wheel's
    saved = save_files(page, project)

    modules = [block.module for block in saved if block.marker != "pytest"]
    if modules:
        imported = run([wheel.python, "-c", "; ".join(f"import {m}" for m in modules)],
                       project, env)
        assert imported.returncode == 0, (
            f"{page.name}: importing its files {modules} failed:\n{imported.stderr}"
        )

    shutil.copy(DRIVER, project / DRIVER.name)
    for number, program in enumerate(snippets.programs(page)):
        spec = project / f"program-{number}.json"
        spec.write_text(json.dumps({
            "tmp": str(project),
            "blocks": [{"page": str(b.page), "line": b.line, "code": b.code}
                       for b in program.blocks],
        }), "utf-8")
        result = run([wheel.python, DRIVER.name, spec.name], project, env)
        assert result.returncode == 0, (
            f"{where(program.blocks[0])}: the program failed (status {result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )

    for block in snippets.pytest_modules(page):
        name = block.file_name or f"test_docs_{block.line}.py"
        (project / name).write_text(block.code, "utf-8")
        result = run([wheel.python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                      "--rootdir", project, name], project, env)
        assert result.returncode == 0, (
            f"{where(block)}: the test module failed:\n{result.stdout}\n{result.stderr}"
        )

    for command in snippets.shell_commands(page):
        result = run(["/bin/sh", "-c", command.command], project, env)
        place = f"{command.page.relative_to(ROOT)}:{command.line}: {command.command}"
        assert result.returncode == 0, f"{place}\n{result.stdout}\n{result.stderr}"
        if command.expected is not None:
            assert command.matches(result.stdout), (
                f"{place}: printed {result.stdout!r}, the page shows {command.expected!r}"
            )


# --- the conventions -----------------------------------------------------------------------


def test_blocks_markers_and_programs(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n```python\nx = 1\n```\n\n<!-- continues -->\n```python\nprint(x)\n```\n\n"
        "<!-- not-run -->\n```python\nfragment(\n```\n\n```python\n# app/mod.py\nY = 2\n```\n\n"
        "<!-- pytest -->\n\n```python\n# test_x.py\ndef test(): pass\n```\n"
        "- item:\n\n    ```python\n    y = 2\n    ```\n",
        "utf-8",
    )
    found = snippets.python_blocks(page)
    assert [(b.line, b.code, b.marker) for b in found] == [
        (4, "x = 1\n", None),
        (9, "print(x)\n", "continues"),
        (14, "fragment(\n", "not-run"),
        (18, "# app/mod.py\nY = 2\n", None),
        (25, "# test_x.py\ndef test(): pass\n", "pytest"),
        (31, "y = 2\n", None),
    ]
    programs = snippets.programs(page)
    assert [[b.line for b in p.blocks] for p in programs] == [[4, 9], [31]]
    assert [b.module for b in snippets.files(page)] == ["app.mod", "test_x"]
    assert [b.line for b in snippets.pytest_modules(page)] == [25]


def test_shell_commands_and_sessions(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```sh\npython3 tasks.py demo\njuicectl demo            # or: python -m juicectl demo\n"
        "juicectl call [--timeout S] \\\n    -- CHILD_COMMAND... COMMAND\n"
        "printf 'a\\n' | juicectl shell -- w\n```\n\n"
        "```console\n$ juicectl call -- w Sleep seconds=0.1\n{\"slept\": \"0.1...\"}\n"
        "$ .venv/bin/python benchmarks/run.py\n```\n",
        "utf-8",
    )
    found = snippets.shell_commands(page)
    assert [(c.line, c.command, c.expected) for c in found] == [
        (3, "juicectl demo", None),
        (6, "printf 'a\\n' | juicectl shell -- w", None),
        (10, "juicectl call -- w Sleep seconds=0.1", ('{"slept": "0.1..."}',)),
    ]
    assert found[2].matches('{"slept": "0.1004"}\n')
    assert not found[2].matches('{"slept": "0.2"}\n')
    assert not found[2].matches('{"slept": "0.1"}\nmore\n')


def test_a_failing_program_points_at_its_page_and_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nok = True\nraise ValueError('in the docs')\n```\n")
    [program] = snippets.programs(page)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"tmp": str(tmp_path), "blocks": [
        {"page": str(b.page), "line": b.line, "code": b.code} for b in program.blocks]}))
    result = subprocess.run(["python3", str(DRIVER), str(spec)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 1
    assert f'File "{page}", line 5' in result.stderr and "in the docs" in result.stderr
