"""The local launcher's checks: a failure names the cwd as the cwd, and the program as the
program, with where it was looked for."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from juicectl import ProcessLaunchError
from juicectl.launch import Invocation, LocalLauncher, check_cwd, find_program, launch_failure
from juicectl.policy import LaunchSpec


def executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_a_program_is_found_on_the_childs_path_not_the_parents(tmp_path: Path) -> None:
    executable(tmp_path / "only-here")
    assert find_program("only-here", {"PATH": str(tmp_path)}, None) == str(tmp_path / "only-here")
    with pytest.raises(FileNotFoundError) as info:
        find_program("only-here", {"PATH": "/nonexistent-a:/nonexistent-b"}, None)
    assert str(info.value.strerror) == (
        "No such file or directory: 'only-here' is not on PATH (/nonexistent-a:/nonexistent-b)"
    )


def test_a_relative_path_is_relative_to_the_childs_cwd(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    executable(tmp_path / "bin" / "worker")
    assert find_program("bin/worker", None, str(tmp_path)) == str(tmp_path / "bin" / "worker")
    with pytest.raises(FileNotFoundError) as info:
        find_program("bin/worker", None, str(tmp_path / "bin"))
    assert info.value.strerror == f"No such file or directory (cwd {str(tmp_path / 'bin')!r})"


def test_a_file_that_is_not_executable_or_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("data")
    with pytest.raises(PermissionError, match=r"'.*plain' is not executable"):
        find_program(str(tmp_path / "plain"), None, None)
    with pytest.raises(PermissionError, match="is a directory"):
        find_program(str(tmp_path), None, None)


def test_the_cwd_is_named_as_the_cwd(tmp_path: Path) -> None:
    missing = str(tmp_path / "gone")
    with pytest.raises(FileNotFoundError) as info:
        check_cwd(missing)
    assert info.value.strerror == f"the working directory (cwd) {missing!r} does not exist"
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        check_cwd(str(tmp_path / "file"))
    check_cwd(str(tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root enters any directory")
def test_a_cwd_that_cannot_be_entered_is_named(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o600)
    with pytest.raises(PermissionError, match="cannot be entered"):
        check_cwd(str(locked))


def test_the_launcher_names_a_cwd_removed_after_the_spec_was_made(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    spec = LaunchSpec(argv=[sys.executable, "-c", "pass"], cwd=str(workdir))
    workdir.rmdir()
    with pytest.raises(ProcessLaunchError) as info:
        LocalLauncher().invocation(spec)
    assert str(info.value) == (
        f"cannot launch {[sys.executable, '-c', 'pass']!r}: "
        f"the working directory (cwd) {str(workdir)!r} does not exist"
    )
    assert "No such file" not in str(info.value)  # not the program missing
    assert isinstance(info.value.os_error, FileNotFoundError)


def test_the_launcher_hands_back_the_command_unchanged(tmp_path: Path) -> None:
    spec = LaunchSpec(argv=["sh", "-c", "exit 0"], env={"PATH": "/usr/bin:/bin"},
                      cwd=str(tmp_path))
    assert LocalLauncher().invocation(spec) == Invocation(
        argv=("sh", "-c", "exit 0"), env={"PATH": "/usr/bin:/bin"}, cwd=str(tmp_path),
        command=("sh", "-c", "exit 0"),
    )


def test_any_exception_at_spawn_names_the_command_and_the_cwd(tmp_path: Path) -> None:
    invocation = Invocation(argv=("x",), env=None, cwd=str(tmp_path), command=("x", "y"))
    error = launch_failure(invocation, TypeError("expected str, not int"))
    assert str(error) == (
        f"cannot launch ['x', 'y']: TypeError: expected str, not int (cwd {str(tmp_path)!r})"
    )
    assert isinstance(error.os_error.__cause__, TypeError)


def test_a_script_whose_interpreter_is_missing_says_so(tmp_path: Path) -> None:
    script = executable(tmp_path / "tool", "#!/no/such/python3 -u\nprint('hi')\n")
    invocation = Invocation(argv=(str(script),), env=None, cwd=None, command=(str(script),))
    error = launch_failure(invocation, FileNotFoundError(errno.ENOENT, "No such file or "
                                                         "directory", str(script)))
    assert f"{str(script)!r} names '/no/such/python3' on its #! line" in str(error)
