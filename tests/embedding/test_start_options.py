"""Every option of ``ProcessController.start()`` is checked at the door.

A bad value raises at once, with an error that names the option and shows the value, and
before any actor starts: no actor, no thread is left behind. ``RestartPolicy`` checks its own
fields the same way, types as well as ranges.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest

from juicectl import ProcessController, ReplyFuture, RestartPolicy, aio
from juicectl.aio import AsyncProcessController
from juicectl.testing import FakeController, scripted_controller
from tests.workers.commands import Echo
from tests.workers.echo import EchoWorker

ARGV = [sys.executable, "-c", "pass"]


class Idle(pykka.ThreadingActor):
    """An actor that does nothing; its ref is a valid subscriber or hook."""

    use_daemon_thread = True


def stopped_ref() -> pykka.ActorRef[Any]:
    ref = Idle.start()
    ref.stop()
    return ref


#: (options, the error's type, a pattern its message matches). The options are made on demand:
#: some are actor refs, which must not outlive the test.
BAD_START_OPTIONS: list[tuple[str, Callable[[], dict[str, Any]], type[Exception], str]] = [
    ("responder=5", lambda: {"responder": 5}, TypeError,
     r"responder must be an object with @Command\.responder methods .*, not 5 \(it has none\)"),
    ("responder=function", lambda: {"responder": lambda: None}, TypeError,
     r"responder must be an object with @Command\.responder methods .*, not <function"),
    ("subscribers=[print]", lambda: {"subscribers": [print]}, TypeError,
     r"subscribers\[0\] must be a pykka\.ActorRef, not <built-in function print> "
     r"\(a callable: give it as on_process_startup"),
    ("subscribers=[ref, 5]", lambda: {"subscribers": [Idle.start(), 5]}, TypeError,
     r"subscribers\[1\] must be a pykka\.ActorRef, not 5$"),
    ("subscribers=ref", lambda: {"subscribers": Idle.start()}, TypeError,
     r"subscribers must be an iterable of pykka\.ActorRef, not one ActorRef: write "
     r"subscribers=\[<ActorRef"),
    ("subscribers='refs'", lambda: {"subscribers": "refs"}, TypeError,
     "subscribers must be an iterable of pykka.ActorRef, not 'refs'"),
    ("subscribers=5", lambda: {"subscribers": 5}, TypeError,
     "subscribers must be an iterable of pykka.ActorRef, not 5"),
    ("subscribers=[stopped]", lambda: {"subscribers": [stopped_ref()]}, ValueError,
     r"subscribers\[0\] is an actor that has stopped: <ActorRef"),
    ("on_process_startup=5", lambda: {"on_process_startup": 5}, TypeError,
     "on_process_startup must be a no-argument callable or a pykka.ActorRef, or None, not 5"),
    ("on_process_startup=f(event)", lambda: {"on_process_startup": lambda event: None},
     TypeError, r"on_process_startup must be a no-argument callable .*: "
     r"<lambda>\(event\) cannot be called with 0 arguments"),
    ("on_process_termination='print'", lambda: {"on_process_termination": "print"}, TypeError,
     "on_process_termination must be a no-argument callable or a pykka.ActorRef, or None, "
     "not 'print'"),
    ("on_process_termination=stopped", lambda: {"on_process_termination": stopped_ref()},
     ValueError, "on_process_termination is an ActorRef of an actor that has stopped"),
    # The first hook is fine: it must not be started when the second is refused.
    ("on_process_startup=ok, on_process_termination=5",
     lambda: {"on_process_startup": lambda: None, "on_process_termination": 5}, TypeError,
     "on_process_termination must be"),
    ("restart='permanent'", lambda: {"restart": "permanent"}, TypeError,
     "restart must be a juicectl.RestartPolicy or None, not 'permanent'"),
    ("restart={...}", lambda: {"restart": {"mode": "temporary"}}, TypeError,
     r"restart must be a juicectl\.RestartPolicy or None, not \{'mode': 'temporary'\}"),
    ("name=5", lambda: {"name": 5}, TypeError, "name must be a str or None, not int 5"),
    ("name=''", lambda: {"name": ""}, ValueError, "name must be a non-empty str or None"),
    ("readiness='ready'", lambda: {"readiness": "ready"}, ValueError,
     "readiness must be 'negotiate' or 'connected', not 'ready'"),
    ("readiness=1", lambda: {"readiness": 1}, ValueError,
     "readiness must be 'negotiate' or 'connected', not 1"),
    ("prepare='setup'", lambda: {"prepare": "setup"}, TypeError,
     "prepare must be a callable taking the Connection, or None, not 'setup'"),
    ("prepare=f()", lambda: {"prepare": lambda: None}, TypeError,
     r"prepare must be a callable taking the Connection, or None: <lambda>\(\) cannot be "
     "called with 1 argument"),
    ("process_factory=5", lambda: {"process_factory": 5}, TypeError,
     r"process_factory must be a callable \(controller_ref, generation, spec\) -> ActorRef, "
     "or None, not 5"),
    ("process_factory=f(ref)", lambda: {"process_factory": lambda ref: ref}, TypeError,
     r"process_factory must be .*: <lambda>\(ref\) cannot be called with 3 arguments"),
    ("env={'A': 1}", lambda: {"env": {"A": 1}}, TypeError, r"env\['A'\] must be a str, not int 1"),
    ("env=5", lambda: {"env": 5}, TypeError, "env must be a mapping of str to str"),
    ("cwd=5", lambda: {"cwd": 5}, TypeError, "cwd must be a str"),
    ("startup_timeout='5'", lambda: {"startup_timeout": "5"}, TypeError,
     "startup_timeout must be a number of seconds, not '5'"),
]


@pytest.fixture
def nothing_left_running() -> Iterator[None]:
    """Fails the test if it leaves a thread or an actor running that it did not find."""
    threads = set(threading.enumerate())
    yield
    # The refs a case made on purpose (valid subscribers, next to the bad one) are its own.
    for ref in pykka.ActorRegistry.get_by_class(Idle):
        ref.stop()
    assert pykka.ActorRegistry.get_all() == []
    assert set(threading.enumerate()) <= threads


@pytest.mark.usefixtures("nothing_left_running")
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [case[1:] for case in BAD_START_OPTIONS],
    ids=[case[0] for case in BAD_START_OPTIONS],
)
def test_start_refuses_a_bad_option_and_starts_nothing(
    options: Callable[[], dict[str, Any]], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ProcessController.start(ARGV, **options())


@pytest.mark.usefixtures("nothing_left_running")
@pytest.mark.parametrize(
    ("argv", "message"),
    [(5, "argv must be a non-empty list of strings"),
     (None, "argv must be a non-empty list of strings"),
     ([], "argv must be a non-empty list of strings"),
     ("python worker.py", "argv must be a non-empty list of strings .*never runs a shell")],
    ids=repr,
)
def test_start_refuses_a_bad_argv(argv: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProcessController.start(argv)


def test_good_options_of_every_kind_are_taken() -> None:
    subscriber = Idle.start()
    hook = Idle.start()
    ctl = ProcessController.start(
        iter(ARGV),
        name="checked",
        subscribers=(subscriber,),
        on_process_startup=hook,
        on_process_termination=print,  # a builtin: its signature cannot be read, it is trusted
        prepare=lambda connection: None,
        restart=RestartPolicy(mode="temporary", max_restarts=0),
    )
    try:
        assert ctl.spec.argv == tuple(ARGV)
        assert ctl.mode == "stopped"
    finally:
        assert ctl.close() is not None


#: (field, bad value, the error's type, what the message says).
BAD_POLICY_FIELDS: list[tuple[str, Any, type[Exception], str]] = [
    ("mode", "sometimes", ValueError,
     "RestartPolicy.mode must be 'permanent', 'transient' or 'temporary', not 'sometimes'"),
    ("mode", None, ValueError, "RestartPolicy.mode must be .* not None"),
    *[
        case
        for name in ("initial_delay", "factor", "max_delay", "jitter", "window", "reset_after")
        for case in [
            (name, "1", TypeError, f"RestartPolicy.{name} must be a number, not '1'"),
            (name, True, TypeError, f"RestartPolicy.{name} must be a number, not True"),
            (name, None, TypeError, f"RestartPolicy.{name} must be a number, not None"),
            (name, math.nan, ValueError, f"RestartPolicy.{name} must be a finite number, not nan"),
            (name, math.inf, ValueError, f"RestartPolicy.{name} must be a finite number, not inf"),
        ]
    ],
    *[
        (name, -1, ValueError, f"RestartPolicy.{name} must be >= 0, not -1")
        for name in ("initial_delay", "max_delay", "window", "reset_after")
    ],
    ("factor", 0.5, ValueError, r"RestartPolicy.factor must be >= 1, not 0\.5"),
    ("jitter", 1.5, ValueError, r"RestartPolicy.jitter must be within \[0, 1\], not 1\.5"),
    ("jitter", -0.1, ValueError, r"RestartPolicy.jitter must be within \[0, 1\], not -0\.1"),
    ("max_restarts", "5", TypeError, "RestartPolicy.max_restarts must be an int, not '5'"),
    ("max_restarts", 2.5, TypeError, r"RestartPolicy.max_restarts must be an int, not 2\.5"),
    ("max_restarts", False, TypeError, "RestartPolicy.max_restarts must be an int, not False"),
    ("max_restarts", -1, ValueError, "RestartPolicy.max_restarts must be >= 0, not -1"),
]


@pytest.mark.parametrize(
    ("field", "value", "error", "message"),
    BAD_POLICY_FIELDS,
    ids=[f"{field}={value!r}" for field, value, _, _ in BAD_POLICY_FIELDS],
)
def test_a_restart_policy_refuses_a_bad_field(
    field: str, value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RestartPolicy(**{field: value})


def test_a_restart_policy_takes_ints_and_floats_at_its_bounds() -> None:
    policy = RestartPolicy(
        initial_delay=0, factor=1, max_delay=0, jitter=1, max_restarts=0, window=0,
        reset_after=0,
    )
    assert policy.delay(3, rng=lambda: 0.5) == 0.0
    assert RestartPolicy(jitter=0.0, factor=1.5, initial_delay=2).delay(1) == 3.0


# --- FakeController -----------------------------------------------------------------------

#: The options of start() that a FakeController takes too (no process: no argv, env, cwd or
#: process factory).
FAKE_OPTIONS = [
    case for case in BAD_START_OPTIONS
    if not case[0].startswith(("env", "cwd", "process_factory"))
]


@pytest.mark.usefixtures("nothing_left_running")
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [case[1:] for case in FAKE_OPTIONS],
    ids=[case[0] for case in FAKE_OPTIONS],
)
def test_a_fake_controller_refuses_a_bad_option_and_starts_nothing(
    options: Callable[[], dict[str, Any]], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        FakeController(EchoWorker, **options())
    with pytest.raises(error, match=message):
        scripted_controller({Echo: {"value": "x"}}, **options())


@pytest.mark.usefixtures("nothing_left_running")
@pytest.mark.parametrize(
    ("worker", "options", "error", "message"),
    [
        (None, {}, TypeError, "worker must be a worker class or instance, not None"),
        ("tests.workers.echo:EchoWorker", {}, TypeError,
         "worker must be a worker class or instance, not 'tests.workers.echo:EchoWorker' "
         r"\(a FakeController serves a class or an object in memory; .*juicectl_controller"),
        ([EchoWorker], {}, TypeError, "worker must be a worker class or instance, not \\["),
        (EchoWorker, {"concurrency": "2"}, TypeError,
         "concurrency must be an int or None, not '2'"),
        (EchoWorker, {"concurrency": 0}, ValueError, "concurrency must be >= 1, not 0"),
        (EchoWorker, {"concurrency": True}, TypeError,
         "concurrency must be an int or None, not True"),
    ],
    ids=["worker=None", "worker='module:Class'", "worker=[Class]", "concurrency='2'",
         "concurrency=0", "concurrency=True"],
)
def test_a_fake_controller_refuses_a_bad_worker_or_concurrency(
    worker: Any, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        FakeController(worker, **options)


# --- the asyncio forms ------------------------------------------------------------------------


@pytest.mark.usefixtures("nothing_left_running")
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [case[1:] for case in BAD_START_OPTIONS],
    ids=[case[0] for case in BAD_START_OPTIONS],
)
def test_async_start_refuses_a_bad_option_and_starts_nothing(
    options: Callable[[], dict[str, Any]], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        AsyncProcessController.start(ARGV, **options())


BAD_TIMEOUTS: list[tuple[Any, type[Exception], str]] = [
    ("5", TypeError, "timeout must be a number of seconds or None, not '5'"),
    (True, TypeError, "timeout must be a number of seconds or None, not True"),
    (0, ValueError, "timeout must be > 0 seconds or None, not 0"),
    (math.nan, ValueError, "timeout must be > 0 seconds or None, not nan"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("timeout", "error", "message"), BAD_TIMEOUTS, ids=repr)
async def test_the_async_forms_check_their_timeout(
    timeout: Any, error: type[Exception], message: str
) -> None:
    ctl = AsyncProcessController.start(ARGV, name="async-timeouts")
    try:
        for attempt in (
            lambda: aio.get_process(ctl.controller, timeout=timeout),
            lambda: aio.stop_process(ctl.controller, timeout=timeout),
            lambda: ctl.get_process(timeout=timeout),
            lambda: ctl.stop_process(timeout=timeout),
            lambda: ctl.call(Echo, timeout=timeout, value="x"),
            lambda: ctl.close(timeout=timeout),
        ):
            with pytest.raises(error, match=message):
                await attempt()
        # Nothing was asked of the controller: it never launched a child.
        assert await ctl.mode() == "stopped"
    finally:
        await ctl.close()


@pytest.mark.asyncio
async def test_the_async_forms_check_what_they_are_given() -> None:
    message = r"controller must be a ProcessController \(or a juicectl.testing.FakeController\)"
    with pytest.raises(TypeError, match=f"{message}, not 'ctl'"):
        AsyncProcessController("ctl")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=f"{message}, not None"):
        await aio.get_process(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=message):
        await aio.stop_process(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="connection must be a juicectl Connection"):
        await aio.call("conn", Echo, value="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"future must be a pykka\.Future .* not 42"):
        aio.wrap_future(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="loop must be an asyncio event loop or None, not 'l'"):
        aio.wrap_future(ReplyFuture(), loop="l")  # type: ignore[arg-type]
