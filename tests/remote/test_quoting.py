"""One command line for a remote shell means exactly the words it was made of, in every
POSIX shell here, whatever the words hold."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from juicectl import LaunchSpec, prefix
from juicectl.launch import quote_command_line
from juicectl.launch._remote import remote_words, shell_command_line

HOSTILE = [
    "plain", "two words", "", "'", '"', "it's", 'say "hi"', "$HOME", "${HOME}", "$(id)",
    "`id`", "a;b", "a && b", "a | b", "> file", "*", "?", "[a]", "~", "~root", "#comment",
    "back\\slash", "new\nline", "tab\there", "é", "日本語", "-n", "--", "!", "a=b",
    "'\"'\"'", "\r", " leading", "trailing ",
]
SHELLS = [shell for shell in ("sh", "dash", "bash", "zsh", "ksh") if shutil.which(shell)]
PRINT_ARGV = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]


def through_shell(shell: str, words: list[str]) -> list[str]:
    line = quote_command_line([*PRINT_ARGV, *words])
    done = subprocess.run([shell, "-c", line], capture_output=True, text=True, timeout=30,
                          check=True)
    result: list[str] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("shell", SHELLS)
def test_hostile_words_come_out_as_they_went_in(shell: str) -> None:
    assert through_shell(shell, HOSTILE) == HOSTILE


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                        max_size=12), max_size=6))
def test_any_words_come_out_as_they_went_in(words: list[str]) -> None:
    assert through_shell("sh", words) == words


def test_the_shell_line_sets_cwd_and_env_without_the_shim(tmp_path: object) -> None:
    spec = LaunchSpec([*PRINT_ARGV, "x y"], env={"A": "1 2", "B": "$x"}, cwd="/tmp",
                      launcher=prefix(["sh", "-c"], shell_command=True, shim=False))
    line = shell_command_line(spec, python="python3", shim=False)
    assert line.startswith("cd -- /tmp && exec env -i -- ")
    done = subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=30)
    assert json.loads(done.stdout) == ["x y"]


def test_the_shim_words_carry_cwd_and_env_as_arguments() -> None:
    spec = LaunchSpec(["worker", "a b"], env={"A": "1"}, cwd="/srv", kill_timeout=2.0,
                      launcher=prefix(["true"]))
    words = remote_words(spec, python="python3", shim=True)
    assert words[:4] == ["python3", "-I", "-S", "-c"]
    assert words[5:] == ["-g", "0.800", "-C", "/srv", "-i", "-E", "A=1", "--", "worker", "a b"]
