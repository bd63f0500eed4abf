"""The wheel, built once per test session, installed in a bare virtualenv.

Offline on purpose: hatchling builds without isolation (it is in the test extra), the wheel is
installed with ``--no-index --no-deps``, and the packages the installed copy needs (pykka and
structlog, its dependencies, and pytest for the documentation's test modules) are lent to
the fresh environment from this one, by symlinks that a ``.pth`` file puts on its path,
showing it those packages and nothing else. Nothing of the checkout is on that environment's
``sys.path``: run it from a neutral directory, with ``clean_env()``, and only the installed
juicectl can be imported.

``installed(tmp_path_factory)`` builds and installs on its first call and returns the same
environment to every later caller in the process, so the packaging tests and the
documentation's snippet tests share one.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

LENT = ("pykka", "structlog",
        "pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py")
"""What the fresh environment may import besides juicectl and the standard library."""


@dataclass(frozen=True)
class Installed:
    """The built distributions and the environment the wheel is installed in."""

    sdist: Path
    wheel: Path
    dist_dir: Path
    env_dir: Path

    @property
    def python(self) -> Path:
        return self.env_dir / "bin" / "python"

    @property
    def bin(self) -> Path:
        return self.env_dir / "bin"


def run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 300) -> str:
    """Run ``argv`` (no stdin); fail the test unless it exits 0; return stdout + stderr."""
    result = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def build(source: Path, out: Path, *targets: str) -> None:
    selected = [part for target in targets for part in ("-t", target)]
    run(sys.executable, "-m", "hatchling", "build", *selected, "-d", out, cwd=source)


def lend(name: str, deps: Path) -> None:
    """Make the package or module ``name`` (and its metadata) importable from ``deps``."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, name
    origin = Path(spec.origin)
    if origin.name == "__init__.py":
        (deps / name).symlink_to(origin.parent, target_is_directory=True)
        site = origin.parent.parent
    else:
        (deps / origin.name).symlink_to(origin)
        site = origin.parent
    for info in site.glob(f"{name}-*.dist-info"):
        (deps / info.name).symlink_to(info, target_is_directory=True)


def clean_env() -> dict[str, str]:
    """This environment without Python's variables, the virtualenv's, or the PATH to it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.defpath
    return env


_installed: Installed | None = None


def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the sdist and the wheel and install the wheel, once per process."""
    global _installed
    if _installed is None:
        out = tmp_path_factory.mktemp("dist")
        build(ROOT, out, "sdist", "wheel")
        [sdist] = out.glob("juicectl-*.tar.gz")
        [wheel] = out.glob("juicectl-*.whl")
        home = tmp_path_factory.mktemp("fresh")
        env_dir = home / "venv"
        venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
        python = env_dir / "bin" / "python"
        run(sys.executable, "-m", "pip", "--python", python, "install", "--no-index",
            "--no-deps", "--no-cache-dir", "--disable-pip-version-check", wheel, cwd=home)
        deps = home / "deps"
        deps.mkdir()
        for name in LENT:
            lend(name, deps)
        [site_packages] = (env_dir / "lib").glob("python3.*/site-packages")
        (site_packages / "lent-dependencies.pth").write_text(f"{deps}\n")
        _installed = Installed(sdist=sdist, wheel=wheel, dist_dir=out, env_dir=env_dir)
    return _installed
