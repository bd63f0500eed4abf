"""The connection's options: one frozen object, its defaults written once, every bad value
refused where it was written, with the option's name and the value."""

from __future__ import annotations

import dataclasses
import inspect
import math
import sys
import threading
from typing import Any

import pytest

import juicectl
from juicectl import ProcessController
from juicectl.connection import Connection
from juicectl.exceptions import ArgumentError
from juicectl.juice import Limits
from juicectl.policy import ConnectionOptions, LaunchSpec, check_timeout
from juicectl.testing import ControllerFactory, FakeController, connect
from tests.workers.runtime import Echo, TestWorker


class Responder:
    """Answers nothing; only its type matters here."""


#: (options, the error's type, what its message says).
BAD_OPTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"request_timeout": "5"}, TypeError,
     "request_timeout must be a number of seconds or None, not '5'"),
    ({"request_timeout": True}, TypeError,
     "request_timeout must be a number of seconds or None, not True"),
    ({"request_timeout": 0}, ValueError, "request_timeout must be > 0 seconds or None, not 0"),
    ({"request_timeout": -1.5}, ValueError,
     r"request_timeout must be > 0 seconds or None, not -1\.5"),
    ({"request_timeout": math.inf}, ValueError,
     "request_timeout must be > 0 seconds or None, not inf"),
    ({"request_timeout": math.nan}, ValueError,
     "request_timeout must be > 0 seconds or None, not nan"),
    ({"max_in_flight": "10"}, TypeError, "max_in_flight must be an int, not '10'"),
    ({"max_in_flight": 1.5}, TypeError, r"max_in_flight must be an int, not 1\.5"),
    ({"max_in_flight": True}, TypeError, "max_in_flight must be an int, not True"),
    ({"max_in_flight": 0}, ValueError, "max_in_flight must be >= 1, not 0"),
    ({"limits": {"max_line": 10}}, TypeError,
     r"limits must be a juicectl\.juice\.Limits or None, not \{'max_line': 10\}"),
    ({"busy_poll": "fast"}, TypeError, "busy_poll must be a number of seconds, not 'fast'"),
    ({"busy_poll": 1.0}, ValueError, r"busy_poll must be between 0 and 0\.01 seconds, not 1\.0"),
    ({"responder": Responder}, TypeError,
     "responder must be an object whose methods answer the child, not the class Responder"),
]
IDS = [f"{next(iter(options))}={next(iter(options.values()))!r}" for options, _, _ in BAD_OPTIONS]
#: The options the in-memory helpers take as keywords (busy polling is always off there).
IN_MEMORY = {"request_timeout", "max_in_flight", "limits", "responder"}


@pytest.mark.parametrize(("options", "error", "message"), BAD_OPTIONS, ids=IDS)
def test_a_bad_option_is_refused_naming_it_and_the_value(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ConnectionOptions(**options)


@pytest.mark.parametrize(("options", "error", "message"), BAD_OPTIONS, ids=IDS)
def test_a_controller_refuses_a_bad_option_and_starts_nothing(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    threads = threading.active_count()
    with pytest.raises(error, match=message):
        ProcessController.start([sys.executable, "-c", "pass"], **options)
    assert threading.active_count() == threads


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [case for case in BAD_OPTIONS if next(iter(case[0])) in IN_MEMORY],
)
def test_the_in_memory_helpers_refuse_a_bad_option(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    threads = threading.active_count()
    with pytest.raises(error, match=message):
        FakeController(TestWorker, **options)
    with pytest.raises(error, match=message):
        connect(TestWorker, **options)
    assert threading.active_count() == threads


@pytest.mark.parametrize(
    "timeout", ["5", True, 0, -1, math.inf, math.nan], ids=repr
)
def test_call_checks_its_timeout_as_the_options_do(timeout: Any) -> None:
    written: list[bytes] = []
    connection = Connection(written.append, pid=1, generation=1)
    with pytest.raises(ArgumentError, match=rf"Echo not sent: timeout must be .*not {timeout!r}"):
        connection.call(Echo, value="x", timeout=timeout)
    assert isinstance(ArgumentError("x"), ValueError)  # what callers may catch
    assert written == []
    assert connection.stats()["sent"] == 0


def test_check_timeout_takes_numbers_and_gives_floats() -> None:
    assert check_timeout(2, "timeout") == 2.0
    assert isinstance(check_timeout(2, "timeout"), float)
    assert check_timeout(None, "timeout", none=True) is None
    with pytest.raises(TypeError, match="timeout must be a number of seconds, not None"):
        check_timeout(None, "timeout")


@pytest.mark.parametrize("name", ["startup_timeout", "stop_timeout", "kill_timeout"])
@pytest.mark.parametrize(
    ("value", "error"), [("5", TypeError), (0, ValueError), (math.inf, ValueError)], ids=repr
)
def test_the_launch_timeouts_are_checked_the_same_way(
    name: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=f"{name} must be "):
        LaunchSpec(argv=["worker"], **{name: value})


def test_a_launch_spec_holds_connection_options_only() -> None:
    assert LaunchSpec(argv=["worker"]).connection == ConnectionOptions()
    with pytest.raises(TypeError, match="connection must be a ConnectionOptions, not"):
        LaunchSpec(argv=["worker"], connection={"max_in_flight": 3})  # type: ignore[arg-type]


def test_options_are_frozen() -> None:
    options = ConnectionOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.max_in_flight = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "entry", [ProcessController.start, FakeController, connect], ids=lambda f: f.__qualname__
)
def test_every_keyword_default_is_the_options_default(entry: Any) -> None:
    defaults = ConnectionOptions()
    parameters = inspect.signature(entry).parameters
    names = [field.name for field in dataclasses.fields(ConnectionOptions)]
    given = [name for name in names if name in parameters]
    assert given, "no connection option among the keywords"
    for name in given:
        assert parameters[name].default == getattr(defaults, name), name


def test_a_controller_passes_its_options_whole_to_each_connection(
    juicectl_controller: ControllerFactory,
) -> None:
    limits = Limits(max_line_length=100_000)
    ctl = juicectl_controller(TestWorker, request_timeout=7.5, max_in_flight=33, limits=limits)
    options = ctl.spec.connection
    assert options == ConnectionOptions(request_timeout=7.5, max_in_flight=33, limits=limits)
    connection = ctl.get_process().get(timeout=30)
    assert connection.options is options
    assert (connection.request_timeout, connection.max_in_flight) == (7.5, 33)


def test_an_in_memory_pair_takes_the_options_whole_without_busy_polling() -> None:
    with connect(TestWorker, request_timeout=3.0, max_in_flight=5) as pair:
        options = pair.connection.options
        assert options == ConnectionOptions(request_timeout=3.0, max_in_flight=5, busy_poll=0)
        assert pair.connection.call(Echo, value="hi").get(timeout=10) == {"value": "hi"}


def test_connection_options_are_exported_from_juicectl() -> None:
    assert juicectl.ConnectionOptions is ConnectionOptions
    assert "ConnectionOptions" in juicectl.__all__
