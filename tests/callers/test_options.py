"""The connection's options as callers give them: every bad value refused by each entry point
that takes the options as keywords, the defaults written once, the options handed whole to
each connection. The options object itself is checked in ``tests/test_policy.py``."""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import sys
import threading
from typing import Any

import pytest

import juicectl
from juicectl import ProcessController
from juicectl.connection import Connection
from juicectl.exceptions import ArgumentError
from juicectl.juice import Limits
from juicectl.policy import ConnectionOptions
from juicectl.testing import ControllerFactory, FakeController, connect
from tests.test_policy import BAD_OPTION_IDS, BAD_OPTIONS
from tests.workers.runtime import Echo, TestWorker

#: The options the in-memory helpers take as keywords (busy polling is always off there).
IN_MEMORY = {"request_timeout", "max_in_flight", "limits", "responder"}


@pytest.mark.parametrize(("options", "error", "message"), BAD_OPTIONS, ids=BAD_OPTION_IDS)
def test_a_controller_refuses_a_bad_option_and_starts_nothing(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    threads = threading.active_count()
    with pytest.raises(error, match=re.escape(message)):
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
    with pytest.raises(error, match=re.escape(message)):
        FakeController(TestWorker, **options)
    with pytest.raises(error, match=re.escape(message)):
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
