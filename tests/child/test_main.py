"""The worker's command line read without argparse: the plain form only, read as argparse
reads it; every other form is argparse's."""

from __future__ import annotations

import pytest

from juicectl.child._main import _arguments, _plain_arguments

WORKER = "tests.workers.runtime:TestWorker"


@pytest.mark.parametrize(
    "words",
    [
        [WORKER],
        [WORKER, "--concurrency", "3"],
        [WORKER, "--busy-poll", "0"],
        [WORKER, "--busy-poll", "0.001"],
        [WORKER, "--busy-poll", "1e-4"],
        [WORKER, "--concurrency", "1", "--busy-poll", "0.01"],
        [WORKER, "--busy-poll", "0", "--concurrency", "12"],
        ["module:Worker", "--concurrency", "007"],
    ],
)
def test_the_plain_form_is_read_as_argparse_reads_it(words: list[str]) -> None:
    plain = _plain_arguments(words)
    assert plain is not None
    assert plain == _arguments(words)
    assert [type(value) for value in plain] == [type(value) for value in _arguments(words)]


@pytest.mark.parametrize(
    "words",
    [
        [],
        ["--help"],
        [WORKER, "-h"],
        ["--concurrency", "2", WORKER],  # an option first
        [WORKER, "--concurrency=2"],
        [WORKER, "--conc", "2"],  # argparse's abbreviations
        [WORKER, "--concurrency"],
        [WORKER, "--concurrency", "2", "--concurrency", "3"],  # argparse keeps the last
        [WORKER, "--concurrency", "0"],
        [WORKER, "--concurrency", "-1"],
        [WORKER, "--concurrency", "+2"],
        [WORKER, "--concurrency", " 2"],
        [WORKER, "--concurrency", "\u0662"],  # a digit, not an ASCII one
        [WORKER, "--busy-poll", "-0"],
        [WORKER, "--busy-poll", "0.5"],
        [WORKER, "--busy-poll", "nan"],
        [WORKER, "--busy-poll", "soon"],
        [WORKER, "extra"],
        [WORKER, "--", "--concurrency"],
    ],
)
def test_every_other_form_is_left_to_argparse(words: list[str]) -> None:
    assert _plain_arguments(words) is None
