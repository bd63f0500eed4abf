"""The plain data of ``juicectl.policy``, as a pure unit: every default, every value each
object takes and refuses (at the edges), and the whole message of each refusal, since the
message is what a user reads to fix the call.

The restart bookkeeping (``RestartHistory``) has its own tests in
``tests/actors/test_restart_history.py``; what a controller does with a policy is in
``tests/actors`` and ``tests/supervision``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import pytest

from juicectl import ProcessController
from juicectl.juice import Limits
from juicectl.launch import LocalLauncher
from juicectl.policy import ConnectionOptions, LaunchSpec, RestartPolicy, check_timeout
from tests.workers.commands import Echo


def ident(*values: Any) -> str:
    """A test id for ``values`` that reads the same in every run and on a command line."""
    return "-".join(re.sub(r"[^\w.=+-]+", "_", repr(v)).strip("_") or "_" for v in values)


def refusal(make: Any, *args: Any, **kwargs: Any) -> tuple[type[BaseException], str]:
    """The type and the whole message of what ``make(*args, **kwargs)`` raises."""
    with pytest.raises((TypeError, ValueError)) as caught:
        make(*args, **kwargs)
    return type(caught.value), str(caught.value)


# --- the defaults, as docs/supervision.md states them -----------------------------------------

def test_the_restart_policy_defaults() -> None:
    assert dataclasses.asdict(RestartPolicy()) == {
        "mode": "permanent",
        "initial_delay": 0.1,
        "factor": 2.0,
        "max_delay": 30.0,
        "jitter": 0.1,
        "max_restarts": 5,
        "window": 60.0,
        "reset_after": 30.0,
    }


def test_the_launch_spec_defaults() -> None:
    spec = LaunchSpec(argv=["worker"])
    assert (spec.env, spec.cwd, spec.readiness, spec.prepare) == (None, None, "negotiate", None)
    assert (spec.startup_timeout, spec.stop_timeout, spec.kill_timeout) == (10.0, 5.0, 2.0)
    assert spec.stderr_tail_lines == 50
    assert spec.connection == ConnectionOptions()
    assert spec.launcher == LocalLauncher()


def test_the_connection_option_defaults() -> None:
    assert dataclasses.asdict(ConnectionOptions()) == {
        "request_timeout": None,
        "max_in_flight": 1024,
        "limits": None,
        "busy_poll": 0.0001,
        "responder": None,
    }


def test_policies_and_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ConnectionOptions().max_in_flight = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        RestartPolicy().mode = "temporary"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        LaunchSpec(argv=["worker"]).argv = ["other"]  # type: ignore[misc]


# --- timeouts ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "none", "expected"),
    [(2, False, 2.0), (0.5, False, 0.5), (1e-9, False, 1e-9), (3, True, 3.0), (None, True, None)],
    ids=ident,
)
def test_check_timeout_takes_a_positive_number_and_gives_a_float(
    value: Any, none: bool, expected: float | None
) -> None:
    result = check_timeout(value, "timeout", none=none)
    assert result == expected
    assert type(result) is type(expected)


#: (value, none, the error's type, its whole message for the name "wait").
BAD_TIMEOUTS: list[tuple[Any, bool, type[Exception], str]] = [
    (None, False, TypeError, "wait must be a number of seconds, not None"),
    ("5", False, TypeError, "wait must be a number of seconds, not '5'"),
    (True, False, TypeError, "wait must be a number of seconds, not True"),
    ("5", True, TypeError, "wait must be a number of seconds or None, not '5'"),
    (False, True, TypeError, "wait must be a number of seconds or None, not False"),
    (0, False, ValueError, "wait must be > 0 seconds, not 0"),
    (0.0, True, ValueError, "wait must be > 0 seconds or None, not 0.0"),
    (-1, False, ValueError, "wait must be > 0 seconds, not -1"),
    (math.inf, False, ValueError, "wait must be > 0 seconds, not inf"),
    (math.inf, True, ValueError, "wait must be > 0 seconds or None, not inf"),
    (math.nan, False, ValueError, "wait must be > 0 seconds, not nan"),
    (1e10, False, ValueError,
     "wait must be at most 9223372036 seconds (the longest a thread can wait), not 10000000000.0"),
    (1e308, True, ValueError,
     "wait must be at most 9223372036 seconds (the longest a thread can wait), not 1e+308"),
]


@pytest.mark.parametrize(
    ("value", "none", "error", "message"), BAD_TIMEOUTS,
    ids=[ident(value, none) for value, none, _, _ in BAD_TIMEOUTS],
)
def test_check_timeout_refuses_naming_the_option_and_the_value(
    value: Any, none: bool, error: type[Exception], message: str
) -> None:
    assert refusal(check_timeout, value, "wait", none=none) == (error, message)


def test_a_start_option_too_long_for_a_thread_to_wait_is_refused_at_the_door() -> None:
    # Once taken, it ended the shared timer thread (OverflowError) when the start was timed.
    with pytest.raises(ValueError, match="startup_timeout must be at most 9223372036 seconds"):
        ProcessController.start(["true"], startup_timeout=1e308)


def test_a_timeout_may_be_none_only_where_the_caller_says_so() -> None:
    assert refusal(check_timeout, None, "wait") == (
        TypeError, "wait must be a number of seconds, not None"
    )


# --- RestartPolicy ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "options",
    [
        {"mode": "transient"}, {"mode": "temporary"},
        {"initial_delay": 0}, {"max_delay": 0}, {"window": 0}, {"reset_after": 0},
        {"factor": 1}, {"jitter": 0}, {"jitter": 1}, {"max_restarts": 0},
    ],
    ids=ident,
)
def test_a_restart_policy_takes_each_value_at_its_edge(options: dict[str, Any]) -> None:
    policy = RestartPolicy(**options)
    for name, value in options.items():
        assert getattr(policy, name) == value


#: (options, the whole message of the ValueError).
BAD_POLICIES: list[tuple[dict[str, Any], str]] = [
    ({"mode": "sometimes"},
     "RestartPolicy.mode must be 'permanent', 'transient' or 'temporary', not 'sometimes'"),
    ({"mode": "Permanent"},
     "RestartPolicy.mode must be 'permanent', 'transient' or 'temporary', not 'Permanent'"),
    ({"initial_delay": -0.5}, "RestartPolicy.initial_delay must be >= 0, not -0.5"),
    ({"max_delay": -1}, "RestartPolicy.max_delay must be >= 0, not -1"),
    ({"window": -1}, "RestartPolicy.window must be >= 0, not -1"),
    ({"reset_after": -0.001}, "RestartPolicy.reset_after must be >= 0, not -0.001"),
    ({"factor": 0.99}, "RestartPolicy.factor must be >= 1, not 0.99"),
    ({"jitter": 1.5}, "RestartPolicy.jitter must be within [0, 1], not 1.5"),
    ({"jitter": -0.1}, "RestartPolicy.jitter must be within [0, 1], not -0.1"),
    ({"max_restarts": -1}, "RestartPolicy.max_restarts must be >= 0, not -1"),
]


@pytest.mark.parametrize(
    ("options", "message"), BAD_POLICIES, ids=[ident(options) for options, _ in BAD_POLICIES]
)
def test_a_restart_policy_refuses_a_bad_value_naming_it(
    options: dict[str, Any], message: str
) -> None:
    assert refusal(RestartPolicy, **options) == (ValueError, message)


NUMBERS = ["initial_delay", "factor", "max_delay", "jitter", "window", "reset_after"]


@pytest.mark.parametrize("name", NUMBERS)
@pytest.mark.parametrize("value", [True, "1", None], ids=ident)
def test_a_restart_policy_number_of_another_type_is_refused_naming_it(
    name: str, value: Any
) -> None:
    assert refusal(RestartPolicy, **{name: value}) == (
        TypeError, f"RestartPolicy.{name} must be a number, not {value!r}"
    )


@pytest.mark.parametrize("name", NUMBERS)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=ident)
def test_a_restart_policy_number_must_be_finite(name: str, value: float) -> None:
    assert refusal(RestartPolicy, **{name: value}) == (
        ValueError, f"RestartPolicy.{name} must be a finite number, not {value!r}"
    )


@pytest.mark.parametrize("value", [True, 2.0, "5", None], ids=ident)
def test_max_restarts_is_an_int(value: Any) -> None:
    assert refusal(RestartPolicy, max_restarts=value) == (
        TypeError, f"RestartPolicy.max_restarts must be an int, not {value!r}"
    )


# --- LaunchSpec -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "argv", [["worker"], ("worker", "--flag"), ["worker", ""], ["/bin/a b", "x y"]], ids=ident
)
def test_argv_is_any_sequence_of_strings_with_a_program(argv: Any) -> None:
    assert LaunchSpec(argv=argv).argv == argv


#: (argv, the error's type, its whole message).
BAD_ARGV: list[tuple[Any, type[Exception], str]] = [
    ("worker", ValueError,
     "argv must be a non-empty list of strings (juicectl never runs a shell), not 'worker'"),
    (b"worker", ValueError,
     "argv must be a non-empty list of strings (juicectl never runs a shell), not b'worker'"),
    ([], ValueError,
     "argv must be a non-empty list of strings (juicectl never runs a shell), not []"),
    (None, ValueError,
     "argv must be a non-empty list of strings (juicectl never runs a shell), not None"),
    ({"worker"}, ValueError,
     "argv must be a non-empty list of strings (juicectl never runs a shell), not {'worker'}"),
    (["worker", 1], TypeError,
     "every item of argv must be a str: argv[1] is int 1 in ['worker', 1]"),
    ([Path("worker")], TypeError,
     "every item of argv must be a str: argv[0] is PosixPath PosixPath('worker') in "
     "[PosixPath('worker')]"),
    (["worker", "a\0b"], ValueError, "argv[1] contains a NUL character: 'a\\x00b'"),
    (["", "x"], ValueError, "argv[0], the program, is empty: ['', 'x']"),
]


@pytest.mark.parametrize(
    ("argv", "error", "message"), BAD_ARGV, ids=[ident(argv) for argv, _, _ in BAD_ARGV]
)
def test_a_bad_argv_is_refused_saying_what_is_wrong(
    argv: Any, error: type[Exception], message: str
) -> None:
    assert refusal(LaunchSpec, argv=argv) == (error, message)


@pytest.mark.parametrize("env", [None, {}, {"A": ""}, {"A_B": "x=y", "C": "1 2"}], ids=ident)
def test_env_is_none_or_a_mapping_of_names_to_strings(env: Any) -> None:
    assert LaunchSpec(argv=["worker"], env=env).env == env


#: (env, the error's type, its whole message).
BAD_ENV: list[tuple[Any, type[Exception], str]] = [
    ([("A", "1")], TypeError,
     "env must be a mapping of str to str (or None to inherit), not list [('A', '1')]"),
    ("A=1", TypeError, "env must be a mapping of str to str (or None to inherit), not str 'A=1'"),
    ({1: "x"}, TypeError, "env keys must be str: 1 is int"),
    ({b"A": "x"}, TypeError, "env keys must be str: b'A' is bytes"),
    ({"": "x"}, ValueError, "env key '' is not a variable name (empty, or with '=' or NUL)"),
    ({"A=B": "x"}, ValueError, "env key 'A=B' is not a variable name (empty, or with '=' or NUL)"),
    ({"A\0": "x"}, ValueError,
     "env key 'A\\x00' is not a variable name (empty, or with '=' or NUL)"),
    ({"A": 1}, TypeError, "env['A'] must be a str, not int 1"),
    ({"A": None}, TypeError, "env['A'] must be a str, not NoneType None"),
    ({"A": "x\0y"}, ValueError, "env['A'] contains a NUL character: 'x\\x00y'"),
]


@pytest.mark.parametrize(
    ("env", "error", "message"), BAD_ENV, ids=[ident(env) for env, _, _ in BAD_ENV]
)
def test_a_bad_env_is_refused_saying_what_is_wrong(
    env: Any, error: type[Exception], message: str
) -> None:
    assert refusal(LaunchSpec, argv=["worker"], env=env) == (error, message)


def test_cwd_is_a_directory_and_a_path_is_taken_as_its_str(tmp_path: Path) -> None:
    assert LaunchSpec(argv=["worker"], cwd=str(tmp_path)).cwd == str(tmp_path)
    spec = LaunchSpec(argv=["worker"], cwd=tmp_path)  # type: ignore[arg-type]
    assert spec.cwd == str(tmp_path)
    assert type(spec.cwd) is str


def test_a_bad_cwd_is_refused_saying_what_is_wrong(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert refusal(LaunchSpec, argv=["worker"], cwd=str(missing)) == (
        ValueError, f"the working directory (cwd) {str(missing)!r} does not exist"
    )
    assert refusal(LaunchSpec, argv=["worker"], cwd=missing) == (
        ValueError, f"the working directory (cwd) {str(missing)!r} does not exist"
    )
    assert refusal(LaunchSpec, argv=["worker"], cwd=3) == (
        TypeError, "cwd must be a str (a directory) or None to inherit, not int 3"
    )


@pytest.mark.parametrize("readiness", ["negotiate", "connected"])
def test_readiness_is_one_of_two_names(readiness: Any) -> None:
    assert LaunchSpec(argv=["worker"], readiness=readiness).readiness == readiness


@pytest.mark.parametrize("readiness", ["fast", "Connected", None])
def test_another_readiness_is_refused(readiness: Any) -> None:
    assert refusal(LaunchSpec, argv=["worker"], readiness=readiness) == (
        ValueError, f"readiness must be 'negotiate' or 'connected', not {readiness!r}"
    )


@pytest.mark.parametrize("name", ["startup_timeout", "stop_timeout", "kill_timeout"])
def test_the_launch_timeouts_are_checked_by_name(name: str) -> None:
    assert getattr(LaunchSpec(argv=["worker"], **{name: 0.25}), name) == 0.25
    assert refusal(LaunchSpec, argv=["worker"], **{name: None}) == (
        TypeError, f"{name} must be a number of seconds, not None"
    )
    assert refusal(LaunchSpec, argv=["worker"], **{name: "5"}) == (
        TypeError, f"{name} must be a number of seconds, not '5'"
    )
    assert refusal(LaunchSpec, argv=["worker"], **{name: 0}) == (
        ValueError, f"{name} must be > 0 seconds, not 0"
    )
    assert refusal(LaunchSpec, argv=["worker"], **{name: math.inf}) == (
        ValueError, f"{name} must be > 0 seconds, not inf"
    )


def test_a_launch_spec_holds_connection_options_only() -> None:
    options = ConnectionOptions(max_in_flight=3)
    assert LaunchSpec(argv=["worker"], connection=options).connection is options
    assert refusal(LaunchSpec, argv=["worker"], connection={"max_in_flight": 3}) == (
        TypeError, "connection must be a ConnectionOptions, not {'max_in_flight': 3}"
    )


class BareLauncher:
    """A launcher of the user's: an ``invocation(spec)`` method and nothing else."""

    def invocation(self, spec: Any) -> Any:
        raise AssertionError("a LaunchSpec does not run its launcher")


class CheckingLauncher(BareLauncher):
    """A launcher that looks at each spec made with it."""

    def __init__(self) -> None:
        self.checked: list[Any] = []

    def check(self, spec: Any) -> None:
        self.checked.append(spec)


def test_any_object_with_an_invocation_method_is_a_launcher() -> None:
    bare = BareLauncher()
    assert LaunchSpec(argv=["worker"], launcher=bare).launcher is bare  # type: ignore[arg-type]
    # Without check(), nothing is looked for here: not even the cwd.
    assert LaunchSpec(
        argv=["worker"], cwd="/no/such/dir", launcher=bare  # type: ignore[arg-type]
    ).cwd == "/no/such/dir"


def test_a_launcher_checks_each_spec_made_with_it() -> None:
    checking = CheckingLauncher()
    spec = LaunchSpec(argv=["worker"], launcher=checking)  # type: ignore[arg-type]
    assert checking.checked == [spec]


@pytest.mark.parametrize(
    "launcher",
    [None, "ssh://host", BareLauncher, type("NotCallable", (), {"invocation": 3})()],
    ids=["None", "a str", "a launcher class", "invocation not callable"],
)
def test_what_is_not_a_launcher_is_refused_saying_what_would_be(launcher: Any) -> None:
    assert refusal(LaunchSpec, argv=["worker"], launcher=launcher) == (
        TypeError,
        "launcher must be a launcher: juicectl.launch.local(), ssh(host, ...), prefix([...]), "
        f"or an object with an invocation(spec) method; not {launcher!r}",
    )


# --- ConnectionOptions ------------------------------------------------------------------------

class Responder:
    """Answers the child's Echo."""

    @Echo.responder
    def echo(self, value: str) -> dict[str, Any]:
        return {"value": value}

    def __repr__(self) -> str:
        return "Responder()"  # the same in every run: it is part of a test id


class AnswersNothing:
    """Has no responder method: as a responder it would answer nothing."""

    def __repr__(self) -> str:
        return "AnswersNothing()"


@pytest.mark.parametrize(
    "options",
    [
        {"request_timeout": 0.001}, {"request_timeout": 5}, {"max_in_flight": 1},
        {"limits": Limits()}, {"limits": Limits(max_line_length=100)},
        {"busy_poll": 0}, {"busy_poll": 0.01}, {"responder": Responder()},
    ],
    ids=ident,
)
def test_connection_options_take_each_value_at_its_edge(options: dict[str, Any]) -> None:
    made = ConnectionOptions(**options)
    for name, value in options.items():
        assert getattr(made, name) == value


#: (options, the error's type, its whole message). The controller's and the in-memory
#: helpers' keywords are checked against the same table (tests/callers/test_options.py).
BAD_OPTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"request_timeout": "5"}, TypeError,
     "request_timeout must be a number of seconds or None, not '5'"),
    ({"request_timeout": True}, TypeError,
     "request_timeout must be a number of seconds or None, not True"),
    ({"request_timeout": 0}, ValueError, "request_timeout must be > 0 seconds or None, not 0"),
    ({"request_timeout": -1.5}, ValueError,
     "request_timeout must be > 0 seconds or None, not -1.5"),
    ({"request_timeout": math.inf}, ValueError,
     "request_timeout must be > 0 seconds or None, not inf"),
    ({"request_timeout": math.nan}, ValueError,
     "request_timeout must be > 0 seconds or None, not nan"),
    ({"max_in_flight": "10"}, TypeError, "max_in_flight must be an int, not '10'"),
    ({"max_in_flight": 1.5}, TypeError, "max_in_flight must be an int, not 1.5"),
    ({"max_in_flight": True}, TypeError, "max_in_flight must be an int, not True"),
    ({"max_in_flight": 0}, ValueError, "max_in_flight must be >= 1, not 0"),
    ({"limits": {"max_line": 10}}, TypeError,
     "limits must be a juicectl.juice.Limits or None, not {'max_line': 10}"),
    ({"busy_poll": "fast"}, TypeError, "busy_poll must be a number of seconds, not 'fast'"),
    ({"busy_poll": 1.0}, ValueError, "busy_poll must be between 0 and 0.01 seconds, not 1.0"),
    ({"responder": AnswersNothing()}, TypeError,
     "responder must be an object with @Command.responder methods to answer the child, "
     "not AnswersNothing() (it has none)"),
    ({"responder": Responder}, TypeError,
     "responder must be an object whose methods answer the child, not the class Responder "
     "itself (pass an instance)"),
]
BAD_OPTION_IDS = [
    f"{next(iter(options))}={next(iter(options.values()))!r}" for options, _, _ in BAD_OPTIONS
]


@pytest.mark.parametrize(("options", "error", "message"), BAD_OPTIONS, ids=BAD_OPTION_IDS)
def test_a_bad_option_is_refused_naming_it_and_the_value(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    assert refusal(ConnectionOptions, **options) == (error, message)
