"""``tasks.py`` makes the dev install start fast: no import hook, bytecode written.

The hook imports ``importlib.resources`` and more at every interpreter start (about 23 ms
here, for every child the tests and benchmarks start); a ``.pth`` naming a folder that holds
only a link to the package costs nothing and exposes the package alone, as the hook does.
Where ``PYTHONDONTWRITEBYTECODE`` is set, nothing writes the checkout's bytecode and every
child compiles what it imports: ``tasks.py`` writes it, as pip does for an installed package.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT


def _tasks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("juicectl_tasks", ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, Path, Path]:
    """``tasks`` pointed at a made-up checkout and ``.venv`` with the hook's ``.pth``."""
    tasks = _tasks()
    root = tmp_path / "checkout"
    (root / "juicectl").mkdir(parents=True)
    (root / "juicectl" / "__init__.py").write_text("")
    venv = root / ".venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    hook = site / "_editable_impl_juicectl.pth"
    hook.write_text("import _editable_impl_juicectl")
    monkeypatch.setattr(tasks, "ROOT", root)
    monkeypatch.setattr(tasks, "VENV", venv)
    monkeypatch.setattr(tasks, "DEV_PATH", venv / "juicectl-dev-path")
    return tasks, root, hook


def test_the_hook_becomes_a_path_to_a_link_to_the_package(
    layout: tuple[ModuleType, Path, Path],
) -> None:
    tasks, root, hook = layout
    tasks._plain_dev_path()
    folder = Path(hook.read_text().strip())
    assert folder == tasks.DEV_PATH
    assert [p.name for p in folder.iterdir()] == ["juicectl"]
    assert (folder / "juicectl").resolve() == root / "juicectl"


def test_a_second_run_changes_nothing_and_a_stale_link_is_mended(
    layout: tuple[ModuleType, Path, Path], tmp_path: Path,
) -> None:
    tasks, root, hook = layout
    tasks._plain_dev_path()
    tasks._plain_dev_path()
    assert (tasks.DEV_PATH / "juicectl").resolve() == root / "juicectl"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tasks.DEV_PATH / "juicectl").unlink()
    (tasks.DEV_PATH / "juicectl").symlink_to(elsewhere)
    hook.write_text("import _editable_impl_juicectl")  # a later pip install wrote it again
    tasks._plain_dev_path()
    assert (tasks.DEV_PATH / "juicectl").resolve() == root / "juicectl"
    assert hook.read_text() == f"{tasks.DEV_PATH}\n"


def test_without_the_hook_nothing_is_made(layout: tuple[ModuleType, Path, Path]) -> None:
    tasks, _, hook = layout
    hook.unlink()
    tasks._plain_dev_path()
    assert not tasks.DEV_PATH.exists()


@pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
                    reason="runs in the .venv that tasks.py made")
def test_an_interpreter_of_the_dev_venv_imports_no_hook() -> None:
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys, juicectl; print(juicectl.__name__, 'editables' in sys.modules)"],
        capture_output=True, text=True, cwd="/", timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["juicectl", "False"]


def test_the_checkouts_bytecode_is_written_even_where_python_would_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    tasks = _tasks()
    root = tmp_path / "checkout"
    (root / "juicectl").mkdir(parents=True)
    source = root / "juicectl" / "module.py"
    source.write_text("VALUE = 1\n")
    monkeypatch.setattr(tasks, "ROOT", root)
    monkeypatch.setattr(tasks, "PYTHON", Path(sys.executable))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # as on the machines that set it
    tasks._compile_bytecode()
    assert Path(importlib.util.cache_from_source(str(source))).is_file()


def test_a_failed_run_names_its_failed_tests_on_the_last_line_of_stderr(
    layout: tuple[ModuleType, Path, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    # A checker that keeps only the last lines of a long run still sees which tests failed.
    tasks, root, _ = layout
    cache = root / ".pytest_cache" / "v" / "cache"
    cache.mkdir(parents=True)
    (cache / "lastfailed").write_text(
        '{"tests/b.py::test_two": true, "tests/a.py::test_one": true}'
    )
    tasks._name_failures()
    assert capsys.readouterr().err.splitlines()[-1] == (
        "failed (2): tests/a.py::test_one, tests/b.py::test_two"
    )


@pytest.mark.parametrize("content", [None, "not json", "{}"])
def test_without_a_readable_list_of_failures_nothing_is_printed(
    layout: tuple[ModuleType, Path, Path], capsys: pytest.CaptureFixture[str],
    content: str | None,
) -> None:
    tasks, root, _ = layout
    if content is not None:
        cache = root / ".pytest_cache" / "v" / "cache"
        cache.mkdir(parents=True)
        (cache / "lastfailed").write_text(content)
    tasks._name_failures()
    assert capsys.readouterr() == ("", "")
