#!/usr/bin/env python3
"""Project tasks that set up their own virtual environment.

    python3 tasks.py demo     run the demo (installs the package into .venv first)
    python3 tasks.py test     lint, type-check, build the docs strictly, run the test suite
    python3 tasks.py bench    run the benchmarks (on demand, never part of the tests)
    python3 tasks.py mutate MODULE [options]
                              mutation-test one module against the tests that mirror it (on
                              demand, never part of the tests; ``mutate --help`` for options)

Only the standard library is used here, so a fresh machine with Python 3.11+ needs nothing
else. The environment is rebuilt when ``pyproject.toml`` changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def _run(*argv: str | Path) -> int:
    print("+", " ".join(str(a) for a in argv), flush=True)
    return subprocess.call([str(a) for a in argv], cwd=ROOT)


def ensure_venv(extras: str) -> None:
    """Create ``.venv`` and install the package with ``extras``, once per pyproject version."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before anything checks
        sys.exit(f"juicectl needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    stamp = VENV / f".installed-{extras or 'base'}-{digest}"
    if not stamp.exists():
        spec = f".[{extras}]" if extras else "."
        quiet = ["-q"] if os.environ.get("CI") else []
        if _run(PYTHON, "-m", "pip", "install", *quiet, "--disable-pip-version-check",
                "-e", spec) != 0:
            sys.exit("installing the package into .venv failed")
        stamp.touch()
    # Every run: a later pip install (another extra) writes the hook again, and sources change.
    _plain_dev_path()
    _compile_bytecode()


#: The checkout's folders of Python that children of the tests and benchmarks import.
COMPILED = ("juicectl", "tests", "benchmarks", "examples")


def _compile_bytecode() -> None:
    """Write the bytecode of the checkout's modules, as pip does for an installed package.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (or a folder is read-only to the process that
    imports it), nothing else writes it, and every interpreter compiles what it imports, at
    each start: about 27 ms of a worker's start to first answer here (88 -> 61 ms). Python
    checks a ``.pyc`` against its source, so a stale one is never used; files compiled
    already are skipped, so this costs little after the first time.
    """
    folders = [name for name in COMPILED if (ROOT / name).is_dir()]
    done = subprocess.run([str(PYTHON), "-m", "compileall", "-q", *folders],
                          cwd=ROOT, stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        print("compiling the checkout's bytecode failed; every start compiles it instead",
              flush=True)


#: The folder in ``.venv`` that holds only a link to the checkout's package.
DEV_PATH = VENV / "juicectl-dev-path"


def _plain_dev_path() -> None:
    """Swap the editable install's import hook for a plain path entry.

    The hook (hatchling's exact dev mode, through ``editables``) imports ``importlib.resources``,
    ``pathlib``, ``re`` and more at every interpreter start: about 23 ms here, paid by every
    Python of ``.venv``, each child of the tests and benchmarks included, and never by an
    installed wheel. A ``.pth`` naming a folder that holds only a link to ``juicectl/`` costs
    nothing and still exposes the package alone.
    """
    hooks = sorted(VENV.glob("lib*/python*/site-packages/_editable_impl_juicectl.pth"))
    if not hooks:
        return
    link = DEV_PATH / "juicectl"
    try:
        DEV_PATH.mkdir(exist_ok=True)
        if not link.is_symlink() or link.resolve() != ROOT / "juicectl":
            if link.is_symlink():
                link.unlink()
            link.symlink_to(ROOT / "juicectl", target_is_directory=True)
    except OSError as error:  # no links here: keep the hook, which works, only slower
        print(f"keeping the editable install's import hook: {error}", flush=True)
        return
    for hook in hooks:
        hook.write_text(f"{DEV_PATH}\n")


def demo(args: list[str]) -> int:
    ensure_venv("")
    return _run(PYTHON, "-m", "juicectl", "demo", *args)


def test(args: list[str]) -> int:
    ensure_venv("test,dev,docs")
    linted = [p for p in ("juicectl", "tests", "examples", "benchmarks", "scripts", "tasks.py")
              if (ROOT / p).exists()]
    # mkdocs 1.x prints a banner about its successor on every run: not news for a test run.
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    for step in (
        [PYTHON, "-m", "ruff", "check", *linted],
        [PYTHON, "-m", "mypy"],
        [PYTHON, "-m", "mkdocs", "build", "--strict", "--quiet"],
    ):
        if _run(*step) != 0:
            return 1
    rc = _run(PYTHON, "-m", "pytest", *args)
    if rc == 5:
        print("pytest collected no tests: that is a failure", flush=True)
        return 1
    if rc != 0:
        _name_failures()
    return rc


def _name_failures() -> None:
    """Name the tests that failed on the last lines of stderr, from pytest's cache: what
    shows after a long run's output (a CI log's tail, a checker that keeps the last lines)."""
    try:
        failed = json.loads((ROOT / ".pytest_cache/v/cache/lastfailed").read_text())
    except (OSError, ValueError):
        return
    if isinstance(failed, dict) and failed:
        print(f"failed ({len(failed)}): " + ", ".join(sorted(failed)), file=sys.stderr,
              flush=True)


def bench(args: list[str]) -> int:
    ensure_venv("test,dev,bench")  # bench: the baselines (other pools, execnet) it runs against
    return _run(PYTHON, "benchmarks/run.py", *args)


#: Each module mutation testing knows, and the tests that mirror it (paths that do not exist
#: are left out, so a mirror planned here counts once it is written).
MUTATE_TESTS: dict[str, list[str]] = {
    "juicectl/juice/_parser.py": ["tests/juice"],
    "juicectl/actors/controller.py": ["tests/actors"],
    "juicectl/policy.py": ["tests/policy", "tests/test_policy.py", "tests/actors"],
    "juicectl/connection.py": [
        "tests/callers",
        "tests/chaos/test_connection_races.py",
        "tests/pool/test_request_path.py",  # what a pool asks of a connection
    ],
    "juicectl/_reading.py": ["tests/callers", "tests/chaos/test_connection_races.py"],
    "juicectl/_pipe.py": ["tests/callers", "tests/chaos/test_connection_races.py"],
    "juicectl/child/_runtime.py": ["tests/child"],
    "juicectl/child/_calls.py": ["tests/child"],
    "juicectl/_busy_poll.py": ["tests/callers/test_busy_poll.py"],
    "juicectl/pool/_dispatch.py": ["tests/pool/test_request_path.py", "tests/pool/test_pool.py"],
}
#: Mutants judged equivalent, each with its reason (see the file itself).
EQUIVALENTS = ROOT / "tests" / "mutation.md"
_MUTANT_NAME = re.compile(r"^(?P<module>.+?)\.x(?:ǁ(?P<cls>[^ǁ]+)ǁ|_)(?P<func>.+)__mutmut_\d+$")


def _mutate_options(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 tasks.py mutate",
        description="Run mutmut on one module, in a copy of the tree, against its mirrored tests.",
    )
    parser.add_argument("module", help=f"the module's path, one of: {', '.join(MUTATE_TESTS)}")
    parser.add_argument("--tests", nargs="+", metavar="PATH",
                        help="test files or folders to run instead of the module's mirror")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2,
                        help="mutants tested at once (default: the number of CPUs)")
    parser.add_argument("--timeout-multiplier", type=float, default=4.0,
                        help="a mutant may take this many times its tests' clean CPU time, "
                             "plus --timeout-constant, before it counts as a timeout (default 4)")
    parser.add_argument("--timeout-constant", type=float, default=5.0,
                        help="seconds added to each mutant's time budget (default 5)")
    parser.add_argument("--workdir", type=Path,
                        help="keep the copy here and reuse it (mutmut then only retests what "
                             "changed); default: a temporary folder removed afterwards")
    parser.add_argument("--retest-survivors", action="store_true",
                        help="with --workdir: test again only the mutants that survived there "
                             "last time (after new tests)")
    parser.add_argument("mutants", nargs="*", metavar="MUTANT",
                        help="only these mutants (names or globs as mutmut shows them)")
    options = parser.parse_intermixed_args(args)
    module = options.module.replace("\\", "/")
    if not module.endswith(".py") and "/" not in module:
        module = module.replace(".", "/") + ".py"  # a dotted name: juicectl.policy
    if not (ROOT / module).is_file():
        parser.error(f"MODULE {options.module!r}: no such file under {ROOT}")
    if options.tests is None and module not in MUTATE_TESTS:
        parser.error(f"MODULE {module!r} has no mirrored tests in MUTATE_TESTS: pass --tests")
    tests = options.tests or [p for p in MUTATE_TESTS[module] if (ROOT / p).exists()]
    missing = [p for p in tests if not (ROOT / p).exists()]
    if missing or not tests:
        parser.error(f"--tests: no such path under {ROOT}: {', '.join(missing) or '(none)'}")
    for name in ("max_children", "timeout_multiplier", "timeout_constant"):
        if getattr(options, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if options.retest_survivors and (options.workdir is None or options.mutants):
        parser.error("--retest-survivors needs --workdir and no MUTANT names")
    options.module, options.tests = module, tests
    return options


def _copy_tree(target: Path) -> None:
    """Copy the tracked and new (not ignored) files of the tree: mutmut rewrites what it has."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _refresh_copy(workdir: Path) -> None:
    """Copy the tree into ``workdir`` afresh, keeping only mutmut's records of a past run.

    mutmut never recopies a file it already has, so everything else it made is removed: the
    results (``*.meta``) and the map of tests (``mutmut-stats.json``) let it retest only what
    changed.
    """
    for path in workdir.iterdir():
        if path.name != "mutants":
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    mutants = workdir / "mutants"
    for path in sorted(mutants.rglob("*"), reverse=True):
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        elif path.suffix != ".meta" and path.name != "mutmut-stats.json":
            path.unlink()
    _copy_tree(workdir)


def _mutmut_config(options: argparse.Namespace, workdir: Path) -> str:
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(f'"{item}"' for item in items) + "]"

    # Tests read docs, examples and scripts from the tree: mutmut copies only what it is told.
    others = sorted(path.name for path in workdir.iterdir()
                    if path.name not in ("juicectl", "tests", "mutants", ".juicectl-mutate"))
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["juicectl"]\n'
        f"also_copy = {toml_list(others)}\n"
        f"only_mutate = {toml_list([options.module])}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(options.tests)}\n"
        f'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "{_MUTATE_PLUGIN}"]\n'
        f"timeout_multiplier = {options.timeout_multiplier}\n"
        f"timeout_constant = {options.timeout_constant}\n"
        "use_git_change_detection = false\n"
    )


#: A pytest plugin written into the copy. mutmut runs the suite many times in one process, which
#: hypothesis takes for a test called from several executors (the check is meant for real
#: runs); and structlog's rich tracebacks would be too slow on mutated modules.
_MUTATE_PLUGIN = "_juicectl_mutate_plugin"
_MUTATE_PLUGIN_SOURCE = '''\
from hypothesis import HealthCheck, settings

settings.register_profile(
    "juicectl-mutate",
    suppress_health_check=[HealthCheck.differing_executors, HealthCheck.too_slow],
    deadline=None,
)
settings.load_profile("juicectl-mutate")

try:
    import structlog.dev as dev
except ImportError:
    dev = None
if dev is not None and getattr(dev, "rich", None) is not None:
    # rich, which mutmut brings in, would print each logged exception with the source of
    # the mutated modules around it (files of 10,000 lines and more): seconds each, enough
    # for the tests' waits to run out. Plain tracebacks say the same.
    dev.RichTracebackFormatter.__call__ = lambda self, sio, exc_info: dev.plain_traceback(
        sio, exc_info
    )
'''


#: Imported by every Python of the run (the folder is on PYTHONPATH): the editable install's
#: import hook would hand the tests, and the children they start, the worktree's juicectl.
_MUTATE_SITE_SOURCE = '''\
"""Written by tasks.py mutate: import juicectl from the mutated copy, not the worktree."""
import sys
from importlib.machinery import PathFinder
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _elsewhere(finder):
    try:
        spec = finder.find_spec("juicectl", None)
    except Exception:
        return False
    origin = getattr(spec, "origin", None)
    return bool(origin) and _HERE not in Path(origin).resolve().parents


sys.meta_path[:] = [f for f in sys.meta_path if f is PathFinder or not _elsewhere(f)]
'''


def _key(function: str, removed: list[str], added: list[str]) -> tuple[str, str, str]:
    """What identifies a mutant across runs: its function and the lines it changes."""
    def flat(lines: list[str]) -> str:
        return " ⏎ ".join(" ".join(line.split()) for line in lines)

    return function, flat(removed), flat(added)


def _listed_equivalents(module: str) -> dict[tuple[str, str, str], str]:
    """The rows of ``tests/mutation.md`` for ``module``: (function, before, after) -> reason."""
    if not EQUIVALENTS.exists():
        return {}
    rows: dict[tuple[str, str, str], str] = {}
    section = None
    for line in EQUIVALENTS.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip().strip("`")
            continue
        if section != module or not line.startswith("| `"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 4:
            function, before, after = (c.strip("`") for c in cells[:3])
            rows[_key(function, [before], [after])] = cells[3]
    return rows


def mutate(args: list[str]) -> int:
    options = _mutate_options(args)
    ensure_venv("test,dev")
    workdir = options.workdir.resolve() if options.workdir else Path(
        tempfile.mkdtemp(prefix="juicectl-mutate-"))
    if workdir == ROOT or ROOT in workdir.parents:
        sys.exit(f"--workdir {workdir}: must be outside the tree (mutmut rewrites its copy)")
    try:
        marker = workdir / ".juicectl-mutate"
        if workdir.exists() and any(workdir.iterdir()) and not marker.exists():
            sys.exit(f"--workdir {workdir}: not empty and not made by this task; refusing to "
                     "overwrite it")
        workdir.mkdir(parents=True, exist_ok=True)
        _refresh_copy(workdir)
        marker.touch()
        with open(workdir / "pyproject.toml", "a") as config:
            config.write(_mutmut_config(options, workdir))
        # Children the tests start (python -m juicectl.child ...) import the mutated copy too.
        # The folder must exist before Python starts: a path missing then is never searched.
        (workdir / "mutants").mkdir(exist_ok=True)
        (workdir / "mutants" / f"{_MUTATE_PLUGIN}.py").write_text(_MUTATE_PLUGIN_SOURCE)
        (workdir / "mutants" / "sitecustomize.py").write_text(_MUTATE_SITE_SOURCE)
        env = dict(os.environ, PYTHONPATH=str(workdir / "mutants"))
        mutmut = [str(PYTHON), "-m", "mutmut"]
        if options.retest_survivors:
            options.mutants = sorted(
                name for name, state in _statuses(mutmut, workdir, env).items()
                if state == "survived"
            )
            if not options.mutants:
                print(f"no survivors recorded in {workdir}", flush=True)
                return 0
        print(f"+ mutmut in {workdir}: {options.module} against {' '.join(options.tests)}",
              flush=True)
        rc = subprocess.call([*mutmut, "run", "--max-children", str(options.max_children),
                              *options.mutants], cwd=workdir, env=env)
        if rc != 0:
            print(f"mutmut run failed (exit status {rc})", flush=True)
            return rc
        return _report(options.module, _statuses(mutmut, workdir, env), mutmut, workdir, env,
                       complete=not options.mutants)
    finally:
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _statuses(mutmut: list[str], workdir: Path, env: dict[str, str]) -> dict[str, str]:
    """Each mutant mutmut knows in ``workdir`` -> its status (killed, survived, timeout...)."""
    listing = subprocess.run([*mutmut, "results", "--all", "true"], cwd=workdir, env=env,
                             check=True, capture_output=True, text=True).stdout
    status: dict[str, str] = {}
    for line in listing.splitlines():
        name, sep, state = line.strip().rpartition(": ")
        if sep and _MUTANT_NAME.match(name):
            status[name] = state
    return status


def _report(module: str, status: dict[str, str], mutmut: list[str], workdir: Path,
            env: dict[str, str], complete: bool) -> int:
    """Print each survivor's diff, telling listed equivalents from new gaps, then the counts.

    ``complete``: every mutant was tested in this run, so a listed equivalent that no longer
    survives is worth saying (the list should drop it).
    """
    counts: dict[str, int] = {}
    for state in status.values():
        counts[state] = counts.get(state, 0) + 1
    listed = _listed_equivalents(module)
    seen: set[tuple[str, str, str]] = set()
    new_gaps = 0
    print(f"\nsurviving mutants of {module}:")
    for name, state in sorted(status.items()):
        if state != "survived":
            continue
        diff = subprocess.run([*mutmut, "show", name], cwd=workdir, env=env, check=True,
                              capture_output=True, text=True).stdout
        lines = diff.splitlines()
        removed = [x[1:] for x in lines if x.startswith("-") and not x.startswith("---")]
        added = [x[1:] for x in lines if x.startswith("+") and not x.startswith("+++")]
        match = _MUTANT_NAME.match(name)
        assert match is not None
        function = ".".join(filter(None, (match["cls"], match["func"])))
        key = _key(function, removed, added)
        seen.add(key)
        if key in listed:
            print(f"  {name}: equivalent ({listed[key]})")
            continue
        new_gaps += 1
        print(f"\n  {name}: SURVIVED, not listed in {EQUIVALENTS.relative_to(ROOT)}")
        print("\n".join("    " + x for x in lines[1:] if not x.startswith(("---", "+++"))))
    equivalent = sum(1 for name, state in status.items() if state == "survived") - new_gaps
    stale = [key for key in listed if key not in seen] if complete else []
    total = len(status)
    killed = counts.get("killed", 0)
    timeout = counts.get("timeout", 0)
    print(f"\n{module}: {total} mutants")
    for state, count in sorted(counts.items(), key=lambda item: -item[1]):
        print(f"  {state:>22}: {count}")
    print(f"  {'listed as equivalent':>22}: {equivalent} of the survivors")
    print(f"  {'new survivors':>22}: {new_gaps}")
    checked = total - counts.get("not checked", 0)
    if checked:
        print(f"  of the {checked} tested: killed {killed / checked:.1%}; killed, timed out or "
              f"listed as equivalent {(killed + timeout + equivalent) / checked:.1%}")
    for function, before, after in stale:
        print(f"  listed but no longer surviving: {function}: {before} -> {after}")
    return 0


TASKS = {"demo": demo, "test": test, "bench": bench, "mutate": mutate}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        print(__doc__)
        return 2
    return TASKS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
