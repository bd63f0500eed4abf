"""The sdist and the wheel build, and the wheel installs and works in a fresh virtualenv.

The build and the environment are made once per session by ``tests.packaging.wheel``, which
the documentation's snippet tests share; see there how it stays offline and bare.
"""

from __future__ import annotations

import importlib.util
import sys
import tarfile
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import juicectl
from tests.conftest import ROOT
from tests.packaging.wheel import Installed, build, clean_env, installed, lend, run

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("hatchling") is None, reason="needs hatchling (the test extra)"
)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = installed(tmp_path_factory)
    return {"sdist": built.sdist, "wheel": built.wheel, "dir": built.dist_dir}


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built: Installed = installed(tmp_path_factory)
    return built.env_dir


def test_the_wheel_holds_the_package_and_its_metadata(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = wheel.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(wheel.read(info).decode("utf-8"))
        entry_points = wheel.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert "juicectl/py.typed" in names
    assert "juicectl/_cli/_demo_worker.py" in names  # the demo runs from a wheel
    assert "juicectl/examples/echo.py" in names  # the docs' examples run from a wheel
    assert not [n for n in names if n.startswith(("tests/", "examples/", "docs/"))]
    assert metadata["Name"] == "juicectl"
    assert metadata["Version"] == juicectl.__version__
    assert metadata["Requires-Python"] == ">=3.11"
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    requirements = " ".join(metadata.get_all("Requires-Dist"))
    assert "pykka" in requirements and "structlog" in requirements
    assert "juicectl = juicectl.__main__:main" in entry_points
    assert "juicectl = juicectl.pytest_plugin" in entry_points


def test_the_sdist_is_complete_enough_to_build_the_wheel(
    dists: dict[str, Path], tmp_path: Path
) -> None:
    with tarfile.open(dists["sdist"]) as sdist:
        names = sdist.getnames()
        if hasattr(tarfile, "data_filter"):  # 3.11.4 and newer
            sdist.extractall(tmp_path, filter="data")
        else:  # pragma: no cover - older 3.11
            sdist.extractall(tmp_path)
    [top] = tmp_path.iterdir()
    for needed in ("pyproject.toml", "README.md", "CHANGELOG.md", "mkdocs.yml",
                   "juicectl/__init__.py", "docs/index.md", "tests/conftest.py",
                   "examples/echo_worker.py"):
        assert f"{top.name}/{needed}" in names, needed
    out = tmp_path / "rebuilt"
    build(top, out, "wheel")
    [rebuilt] = out.glob("*.whl")
    with zipfile.ZipFile(rebuilt) as a, zipfile.ZipFile(dists["wheel"]) as b:
        assert sorted(a.namelist()) == sorted(b.namelist())


def test_the_wheel_works_in_a_fresh_venv(fresh_env: Path, tmp_path: Path) -> None:
    python = fresh_env / "bin" / "python"
    env = clean_env()
    where = run(python, "-c", "import juicectl, juicectl.child, juicectl.aio, juicectl.testing;"
                "print(juicectl.__file__); print(juicectl.__version__)", cwd=tmp_path, env=env)
    location, version = where.split()
    assert Path(location).is_relative_to(fresh_env)
    assert version == juicectl.__version__

    # A worker needs nothing but the codec: pykka and structlog stay unloaded.
    probe = ("import sys, juicectl.child; "
             "print(sorted(m for m in ('pykka', 'structlog') if m in sys.modules))")
    assert run(python, "-c", probe, cwd=tmp_path, env=env).strip() == "[]"

    assert "package.module:WorkerClass" in run(python, "-m", "juicectl.child", "--help",
                                                cwd=tmp_path, env=env)
    script = fresh_env / "bin" / "juicectl"
    assert run(script, "--version", cwd=tmp_path, env=env).strip() == (
        f"juicectl {juicectl.__version__}"
    )
    answer = run(script, "call", "--", python, "-m", "juicectl.child",
                 "juicectl._cli._demo_worker:IndexWorker", "SetStore", f"path={tmp_path / 'store'}",
                 cwd=tmp_path, env=env)
    assert answer == '{"documents": "0"}\n'


def test_the_demo_runs_from_the_installed_wheel(fresh_env: Path, tmp_path: Path) -> None:
    out = run(fresh_env / "bin" / "juicectl", "demo", "--documents", "8", cwd=tmp_path,
              env=clean_env())
    assert "demo OK" in out


def test_versions_agree() -> None:
    # pyproject.toml reads the version from juicectl/__init__.py (hatch's dynamic version).
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    assert 'dynamic = ["version"]' in text and 'path = "juicectl/__init__.py"' in text
    changelog = (ROOT / "CHANGELOG.md").read_text("utf-8")
    assert f"## {juicectl.__version__}" in changelog



def test_the_editable_install_exposes_the_package_alone(tmp_path: Path) -> None:
    # What pip install -e . (tasks.py) installs: no path entry for the checkout's root, so
    # tests/, examples/ and benchmarks/ do not become top-level packages of every program.
    out = tmp_path / "editable"
    build(ROOT, out, "wheel:editable")
    [editable] = out.glob("juicectl-*.whl")
    with zipfile.ZipFile(editable) as archive:
        pth = [archive.read(n).decode() for n in archive.namelist() if n.endswith(".pth")]
    assert pth and not any(line.strip() == str(ROOT) for text in pth for line in text.splitlines())

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--no-deps",
        "--no-cache-dir", "--disable-pip-version-check", editable, cwd=tmp_path)
    deps = tmp_path / "deps"
    deps.mkdir()
    for name in ("editables", "pykka", "structlog"):
        lend(name, deps)
    [site_packages] = (env_dir / "lib").glob("python3.*/site-packages")
    # Before the editable install's own .pth (site reads them in name order), which needs
    # the lent editables.
    (site_packages / "00-lent-dependencies.pth").write_text(f"{deps}\n")
    probe = ("import importlib.util, juicectl; print(juicectl.__file__); "
             "print([m for m in ('tests', 'examples', 'benchmarks') "
             "if importlib.util.find_spec(m) is not None])")
    location, exposed = run(python, "-c", probe, cwd=tmp_path, env=clean_env()).splitlines()
    assert Path(location) == ROOT / "juicectl" / "__init__.py"
    assert exposed == "[]"
