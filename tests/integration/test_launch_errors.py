"""Errors that name the cause: bad launch options fail at ``start()``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from juicectl import ProcessController
from juicectl.policy import LaunchSpec
from tests.integration.scripts import worker


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"env": {"A": 1}}, TypeError, "env['A'] must be a str, not int 1"),
        ({"env": {1: "x"}}, TypeError, "env keys must be str: 1 is int"),
        ({"env": {"A=B": "x"}}, ValueError, "env key 'A=B' is not a variable name"),
        ({"env": {"A": "x\0y"}}, ValueError, "env['A'] contains a NUL character"),
        ({"cwd": "/no/such/directory"}, ValueError,
         "the working directory (cwd) '/no/such/directory' does not exist"),
        ({"cwd": __file__}, ValueError, f"the working directory (cwd) {__file__!r} is not a"),
    ],
    ids=["env-value", "env-key", "env-equals", "env-nul", "cwd-missing", "cwd-file"],
)
def test_bad_launch_options_fail_at_start(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        ProcessController.start(worker(), **options)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"env": "PATH=/bin"}, "env must be a mapping of str to str (or None to inherit), not str"),
        ({"env": [("A", "b")]}, "env must be a mapping of str to str (or None to inherit), not "
                                "list"),
        ({"cwd": 3}, "cwd must be a str (a directory) or None to inherit, not int 3"),
    ],
    ids=["env-str", "env-pairs", "cwd-int"],
)
def test_a_launch_spec_refuses_what_is_not_an_environment_or_a_directory(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError) as info:
        LaunchSpec(argv=["x"], **options)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        ("python3 -m worker", ValueError, "argv must be a non-empty list of strings"),
        ([], ValueError, "argv must be a non-empty list of strings"),
        (["python3", 3], TypeError, "argv[1] is int 3"),
        (["python3", "a\0b"], ValueError, "argv[1] contains a NUL character"),
        (["", "x"], ValueError, "argv[0], the program, is empty"),
    ],
    ids=["str", "empty", "int", "nul", "no-program"],
)
def test_bad_argv_fails_at_start(argv: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        ProcessController.start(argv)
    assert message in str(info.value)


def test_a_path_cwd_is_taken_as_its_str(tmp_path: Path) -> None:
    assert LaunchSpec(argv=["x"], cwd=tmp_path).cwd == str(tmp_path)  # type: ignore[arg-type]
