"""juicectl.testing: the scripted child, the in-memory pair, the fake controller, and the
fixtures that run real controllers on worker classes."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pykka
import pytest
from structlog.testing import capture_logs

from juicectl import ProcessController
from juicectl.child import JuiceChild
from juicectl.exceptions import (
    ArgumentError,
    ControllerClosed,
    ProcessUnavailable,
    RemoteJuiceError,
    UnhandledRemoteJuiceError,
)
from juicectl.juice import Command, Integer, String
from juicectl.messages import (
    ChildProcessCreated,
    ModeChanged,
    ProcessStarted,
    ProcessTerminated,
    StopResult,
)
from juicectl.testing import (
    CRASH,
    ControllerFactory,
    FakeController,
    ScriptedChild,
    connect,
    controller_fixture,
    scripted_controller,
    worker_argv,
)
from tests.actors.controller_harness import FakeConnection
from tests.workers.commands import Echo, Fail, Oops, Pid, Sleep
from tests.workers.echo import EchoWorker


class Add(Command):
    arguments = [("a", Integer()), ("b", Integer())]
    response = [("sum", Integer())]


class Greet(Command):
    """A command the worker sends to its parent."""

    arguments = [("name", String())]
    response = [("greeting", String())]


class Introduce(Command):
    arguments = [("name", String())]
    response = [("line", String())]


class CallingWorker(JuiceChild):
    """Asks the parent before answering: exercises the parent's responder in memory."""

    @Introduce.responder
    def introduce(self, name: str) -> dict[str, Any]:
        greeting = self.call(Greet, name=name).result(timeout=5)["greeting"]
        return {"line": f"{greeting}, I am the child"}


class ParentResponder:
    @Greet.responder
    def greet(self, name: str) -> dict[str, Any]:
        return {"greeting": f"hello {name}"}


# --- ScriptedChild over an in-memory pair ------------------------------------------------


def test_scripted_answers_typed_and_by_name() -> None:
    child = ScriptedChild(
        {
            Add: lambda a, b: {"sum": a + b},
            Echo: {"value": "always this"},
            "Ping": {"pong": "yes", "count": 3},
        }
    )
    with connect(child) as pair:
        connection = pair.connection
        assert connection.call(Add, a=2, b=40).get(timeout=5) == {"sum": 42}
        assert connection.call(Echo, value="x").get(timeout=5) == {"value": "always this"}

        class Ping(Command):
            response = [("pong", String()), ("count", Integer())]

        assert connection.call(Ping).get(timeout=5) == {"pong": "yes", "count": 3}
    assert child.calls == [("Add", {"a": 2, "b": 40}), ("Echo", {"value": "x"}), ("Ping", {})]
    assert child.calls_to(Add) == [{"a": 2, "b": 40}]


def test_scripted_errors() -> None:
    child = ScriptedChild(
        {
            Fail: Oops("declared"),
            Echo: RemoteJuiceError("BUSY", "try again later"),
            Add: ValueError("not declared by Add"),
        }
    )
    with connect(child) as pair:
        connection = pair.connection
        with pytest.raises(Oops, match="declared"):
            connection.call(Fail).get(timeout=5)
        with pytest.raises(RemoteJuiceError) as busy:
            connection.call(Echo, value="x").get(timeout=5)
        assert (busy.value.code, busy.value.description) == ("BUSY", "try again later")
        # Declared errors keep the conversation going ...
        assert not connection.closed
        # ... an undeclared one ends it, as with a real worker.
        with pytest.raises(UnhandledRemoteJuiceError):
            connection.call(Add, a=1, b=2).get(timeout=5)
        with pytest.raises(ProcessUnavailable):
            connection.call(Echo, value="y").get(timeout=5)
        assert not pair.alive


def test_scripted_unknown_command_and_replaced_answer() -> None:
    child = ScriptedChild({Echo: {"value": "one"}})
    with connect(child) as pair:
        assert pair.connection.call(Echo, value="x").get(timeout=5) == {"value": "one"}
        child.answer(Echo, {"value": "two"})
        assert pair.connection.call(Echo, value="x").get(timeout=5) == {"value": "two"}
        with pytest.raises(KeyError):
            child.answer("Nope", {})
        with pytest.raises(UnhandledRemoteJuiceError):
            pair.connection.call(Add, a=1, b=1).get(timeout=5)


BAD_ANSWERS = [
    ("a str", Echo, "hello", TypeError,
     "the script's answer to Echo is 'hello': an answer is a mapping of response fields, None, "
     "an exception, a function of the arguments, CRASH, or a list of these"),
    ("a wrong field", Echo, {"valeu": "x"}, ValueError,
     "the script's answer to Echo: Echo response: unknown 'valeu'"),
    ("a wrong type", Echo, {"value": 5}, ValueError,
     "the script's answer to Echo: Echo response: 'value': expected str"),
    ("a missing field", Echo, None, ValueError,
     "the script's answer to Echo: Echo response: missing required 'value'"),
    ("a function of no argument", Echo, lambda: {"value": "x"}, TypeError,
     r"the script's answer to Echo is a function that cannot take the request's arguments "
     r"\(value\): got an unexpected keyword argument 'value'"),
    ("a function of other arguments", Add, lambda a, c: {"sum": 1}, TypeError,
     r"the script's answer to Add is a function that cannot take the request's arguments "
     r"\(a, b\)"),
    ("a bad answer in a list", Echo, [{"value": "a"}, 5], TypeError,
     r"the script's answer to Echo \(number 2 of the list\) is 5: an answer is"),
    ("an empty list", Echo, [], ValueError,
     "the script's answer to Echo is an empty list: give one answer at least"),
    ("a list in a list", Echo, [[{"value": "a"}]], TypeError,
     r"the script's answer to Echo \(number 1 of the list\) is \[\{'value': 'a'\}\]"),
    ("text that is not text", "Ping", {"pong": object()}, TypeError,
     "the script's answer to Ping: <object object at .*> cannot be sent as text: key the "
     "script by the Command class"),
]


@pytest.mark.parametrize(("command", "answer", "error", "message"),
                         [case[1:] for case in BAD_ANSWERS],
                         ids=[case[0] for case in BAD_ANSWERS])
def test_a_script_answer_is_checked_where_it_is_given(
    command: Any, answer: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ScriptedChild({command: answer})
    fine = {"value": "x"} if command is Echo else {"sum": 1} if command is Add else {}
    child = ScriptedChild({command: fine})
    with pytest.raises(error, match=message):
        child.answer(command, answer)
    with pytest.raises(error, match=message):
        scripted_controller({command: answer})


def test_a_script_mistake_found_at_the_request_is_named_in_the_error() -> None:
    child = ScriptedChild({
        Echo: [lambda value: "not a mapping", lambda value: {"valeu": value}],
        "Ping": lambda: {"pong": "yes"},  # a command named by text declares no arguments
    })
    with FakeController(child) as ctl:
        with pytest.raises(UnhandledRemoteJuiceError,
                           match=r"^UNHANDLED: what the script's answer to Echo returned is "
                           r"'not a mapping', not a mapping of response fields$"):
            ctl.call(Echo, value="x", timeout=5)
        # Each mistake ends its child's conversation, as a worker's bug does.
        wait_for(lambda: ctl.mode == "stopped")
        with pytest.raises(UnhandledRemoteJuiceError,
                           match=r"^UNHANDLED: what the script's answer to Echo returned: Echo "
                           r"response: unknown 'valeu'$"):
            ctl.call(Echo, value="x", timeout=5)
        wait_for(lambda: ctl.mode == "stopped")

        class Ping(Command):
            arguments = [("host", String())]
            response = [("pong", String())]

        with pytest.raises(UnhandledRemoteJuiceError,
                           match=r"^UNHANDLED: the script's answer to Ping is a function that "
                           r"cannot take the request's arguments \(host\): "):
            ctl.call(Ping, host="h", timeout=5)
        assert ctl.stats()["generation"] == 3


# --- a real worker class in memory ---------------------------------------------------------


def test_in_memory_worker_class() -> None:
    with connect(EchoWorker, concurrency=4) as pair:
        connection = pair.connection
        assert connection.call(Echo, value="hé\r\nllo").get(timeout=5) == {"value": "hé\r\nllo"}
        futures = [connection.call(Sleep, seconds=0.05) for _ in range(4)]
        assert [f.get(timeout=5) for f in futures] == [{"slept": 0.05}] * 4
        with pytest.raises(ArgumentError):
            connection.call(Echo)
    assert pair.stop() == "exited"


def test_in_memory_stop_is_clean_and_kill_fails_what_is_in_flight() -> None:
    pair = connect(EchoWorker)
    assert pair.stop() == "clean"
    assert not pair.alive

    pair = connect(EchoWorker)
    sleeping = pair.connection.call(Sleep, seconds=0.5)
    pair.kill("crashed on purpose")
    with pytest.raises(ProcessUnavailable, match="crashed on purpose"):
        sleeping.get(timeout=5)
    with pytest.raises(ProcessUnavailable):
        pair.connection.call(Echo, value="x").get(timeout=5)
    pair.stop()


def test_in_memory_child_calls_its_parent() -> None:
    with connect(CallingWorker, responder=ParentResponder()) as pair:
        answer = pair.connection.call(Introduce, name="ann").get(timeout=5)
    assert answer == {"line": "hello ann, I am the child"}


class Silent:
    """Answers nothing: no responder at all."""


BAD_WORKERS = [
    ("tests.workers.echo:EchoWorker", r"not 'tests.workers.echo:EchoWorker' \(a FakeController "
     r"serves a class or an object in memory; .*juicectl_controller fixture\)"),
    (None, "not None$"),
    (Silent(), "not <.*Silent object .*>: it answers no command"),
    (Silent, "not <class .*Silent.>: it answers no command"),
    ([EchoWorker], r"not \["),
]


@pytest.mark.parametrize(("worker", "message"), BAD_WORKERS,
                         ids=["module:Class", "None", "instance", "class", "list"])
def test_connect_refuses_what_a_fake_controller_refuses(worker: Any, message: str) -> None:
    threads = threading.active_count()
    with pytest.raises(TypeError, match="worker must be a worker class or instance, "
                       + message) as refused:
        connect(worker)
    with pytest.raises(TypeError) as fake_refused:
        FakeController(worker)
    assert str(refused.value) == str(fake_refused.value)
    assert threading.active_count() == threads  # nothing was served


@pytest.mark.parametrize(
    ("concurrency", "error", "message"),
    [("2", TypeError, "concurrency must be an int or None, not '2'"),
     (True, TypeError, "concurrency must be an int or None, not True"),
     (0, ValueError, "concurrency must be >= 1, not 0")],
    ids=repr,
)
def test_connect_checks_its_concurrency(
    concurrency: Any, error: type[Exception], message: str
) -> None:
    threads = threading.active_count()
    with pytest.raises(error, match=message):
        connect(EchoWorker, concurrency=concurrency)
    assert threading.active_count() == threads


def test_an_empty_script_is_a_worker_still() -> None:
    with connect(ScriptedChild({})) as pair, pytest.raises(UnhandledRemoteJuiceError):
        pair.connection.call(Echo, value="x").get(timeout=5)


# --- FakeController -----------------------------------------------------------------------


class Recorder(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[object] = []

    def on_receive(self, message: Any) -> Any:
        if message == "events":
            return list(self.events)
        self.events.append(message)
        return None


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds (hooks run in actors of their own, a moment later)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not reached within {timeout}s: {predicate}"
        time.sleep(0.01)


def test_fake_controller_quacks_like_a_controller() -> None:
    started: list[int] = []
    ended: list[int] = []
    prepared: list[int] = []
    recorder = Recorder.start()
    ctl = FakeController(
        EchoWorker,
        name="fake-echo",
        prepare=lambda connection: prepared.append(connection.generation),
        on_process_startup=lambda: started.append(1),
        on_process_termination=lambda: ended.append(1),
    )
    ctl.subscribe(recorder)
    assert ctl.mode == "stopped"
    assert isinstance(ctl.controller, ProcessController)
    connection = ctl.get_process().get(timeout=5)
    assert ctl.mode == "ready"
    assert connection.pid == 0  # no process
    assert ctl.get_process().get(timeout=5) is connection
    assert connection.call(Echo, value="a").get(timeout=5) == {"value": "a"}
    assert ctl.call(Echo, value="b", timeout=5) == {"value": "b"}

    with capture_logs() as logs:
        sleeping = connection.call(Sleep, seconds=0.3)
        ctl.kill_child()
        with pytest.raises(ProcessUnavailable, match="killed by SIGKILL"):
            sleeping.get(timeout=5)
        # kill_child() returns once the controller has seen the end.
        assert ctl.mode == "stopped"
        wait_for(lambda: ended == [1])
        # The killed child's thread still finishes the Sleep, then ends: its answer goes
        # nowhere (the output died with the child), so nothing reads or logs it.
        wait_for(lambda: not child_threads("fake-echo", 1))
    assert [entry["event"] for entry in logs if entry["log_level"] != "debug"
            and "answer" in entry["event"]] == []

    second = ctl.get_process().get(timeout=5)
    assert second is not connection
    assert second.generation == 2
    assert prepared == [1, 2]
    wait_for(lambda: started == [1, 1])
    assert ctl.stats()["generation"] == 2

    result = ctl.stop_process().get(timeout=5)
    assert result.how == "clean"
    assert ctl.mode == "stopped"
    assert ctl.stop_process().get(timeout=5).how == "not_running"
    assert ended == [1]  # a requested stop is not a termination event

    assert ctl.close() == StopResult("not_running")
    with pytest.raises(ControllerClosed):
        ctl.get_process().get(timeout=5)
    assert ended == [1]

    events = recorder.ask("events")
    modes = [(e.old, e.new) for e in events if isinstance(e, ModeChanged)]
    assert modes == [
        ("stopped", "starting"), ("starting", "ready"), ("ready", "stopped"),
        ("stopped", "starting"), ("starting", "ready"), ("ready", "stopping"),
        ("stopping", "stopped"),
    ]
    assert [type(e) for e in events if not isinstance(e, ModeChanged)] == [
        ProcessStarted, ProcessTerminated, ProcessStarted,
    ]
    [terminated] = [e for e in events if isinstance(e, ProcessTerminated)]
    assert (terminated.reason.how, terminated.reason.signal, terminated.requested) == (
        "signaled", 9, False,
    )


def child_threads(name: str, generation: int) -> list[str]:
    """The threads of an in-memory child still running: its runtime's and its reader."""
    prefix = f"juicectl-{name}-{generation}-"
    return sorted(thread.name.removeprefix(prefix) for thread in threading.enumerate()
                  if thread.name.startswith(prefix) and thread.name.endswith(("-child",
                                                                               "-reader")))


class Hold(Command):
    """Answer once the test lets go."""

    response = [("held", String())]


class HoldingWorker(JuiceChild):
    """Holds each ``Hold`` until ``release`` is set: a handler still running at a kill."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()

    @Hold.responder
    def hold(self) -> dict[str, Any]:
        self.holding.set()
        self.release.wait(30)  # a bound: the test sets it
        return {"held": "yes"}


@pytest.mark.parametrize("concurrency", [1, 2])
def test_kill_child_ends_the_childs_threads_but_a_running_handler(concurrency: int) -> None:
    worker = HoldingWorker()
    try:
        with FakeController(worker, name="held", concurrency=concurrency) as ctl:
            holding = ctl.get_process().get(timeout=5).call(Hold)
            assert worker.holding.wait(5)
            ctl.kill_child()
            with pytest.raises(ProcessUnavailable, match="killed by SIGKILL"):
                holding.get(timeout=5)
            # The handler is still held. The reader ends at once (the child's output died
            # with it); so does the runtime's thread, unless it is the one running the
            # handler (one request at a time: handlers run on it).
            left = [] if concurrency > 1 else ["child"]
            wait_for(lambda: child_threads("held", 1) == left)
            worker.release.set()
            wait_for(lambda: not child_threads("held", 1))
            assert ctl.call(Hold, timeout=5) == {"held": "yes"}  # a new child
    finally:
        worker.release.set()


@pytest.mark.parametrize("busy_poll", [-1, "0.001", 1.0], ids=repr)
def test_fake_controller_checks_busy_poll_as_start_does(busy_poll: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as real:
        ProcessController.start(["never-run"], busy_poll=busy_poll)
    with pytest.raises(type(real.value), match="busy_poll") as fake:
        FakeController(EchoWorker, busy_poll=busy_poll)
    assert str(fake.value) == str(real.value)


def test_fake_controller_takes_busy_poll_but_never_polls() -> None:
    with FakeController(EchoWorker, busy_poll=0.001) as ctl:
        assert ctl.spec.connection.busy_poll == 0.001
        assert ctl.get_process().get(timeout=5).options.busy_poll == 0


@pytest.mark.parametrize("option", ["env", "cwd", "launcher", "process_factory"])
def test_fake_controller_refuses_what_places_a_process(option: str) -> None:
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{option}'"):
        FakeController(EchoWorker, **{option: None})


def test_fake_controller_notices_a_child_that_ended_by_itself() -> None:
    with scripted_controller({Echo: {"value": "v"}, Add: RuntimeError("boom")}) as ctl:
        connection = ctl.get_process().get(timeout=5)
        with pytest.raises(UnhandledRemoteJuiceError):
            connection.call(Add, a=1, b=2).get(timeout=5)
        deadline = time.monotonic() + 5
        while ctl.mode != "stopped" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ctl.mode == "stopped"
        # The next get_process() starts a new child; the scripted worker kept its record.
        assert ctl.call(Echo, value="x", timeout=5) == {"value": "v"}
        assert [name for name, _ in ctl.worker.calls] == ["Add", "Echo"]  # type: ignore[attr-defined]


def test_fake_controller_prepare_failure_fails_the_get() -> None:
    def prepare(connection: Any) -> Any:
        return connection.call(Fail)

    with FakeController(EchoWorker, prepare=prepare) as ctl:
        with pytest.raises(ProcessUnavailable, match=r"start failed: as declared"):
            ctl.get_process().get(timeout=5)
        assert ctl.mode == "stopped"
        assert ctl.stats()["last_exit"]["how"] == "startup_failed"


def test_code_under_test_can_take_either_controller() -> None:
    # The point of the fake: the same function runs against either.
    def shout(controller: ProcessController | FakeController, text: str) -> str:
        return str(controller.call(Echo, value=text.upper(), timeout=5)["value"])

    with scripted_controller({Echo: lambda value: {"value": value + "!"}}) as fake:
        assert shout(fake, "hi") == "HI!"


# --- real controllers: the factory, the plugin fixture and controller_fixture -------------

echo_controller = controller_fixture(EchoWorker, name="echo_fixture_controller")
pid_controller = controller_fixture("tests.workers.echo:EchoWorker")


def test_controller_factory_tears_everything_down() -> None:
    factory = ControllerFactory()
    ctl = factory(EchoWorker)
    pid = ctl.call(Pid, timeout=10)["pid"]
    assert ctl.mode == "ready"
    factory.close_all()
    assert ctl.mode == "stopped"
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)
    assert not [a for a in pykka.ActorRegistry.get_all() if a.is_alive()]


def test_plugin_fixture(juicectl_controller: ControllerFactory) -> None:
    first = juicectl_controller(EchoWorker, name="one")
    second = juicectl_controller("tests.workers.echo:EchoWorker", concurrency=2)
    assert first.call(Echo, value="1", timeout=10) == {"value": "1"}
    assert second.call(Echo, value="2", timeout=10) == {"value": "2"}
    assert "--concurrency" in second.spec.argv


def test_controller_fixture(echo_fixture_controller: ProcessController,
                            pid_controller: ProcessController) -> None:
    assert echo_fixture_controller.call(Echo, value="x", timeout=10) == {"value": "x"}
    assert isinstance(pid_controller.call(Pid, timeout=10)["pid"], int)


@pytest.mark.parametrize(
    ("worker", "concurrency", "error", "message"),
    [(EchoWorker, "2", TypeError, "concurrency must be an int or None, not '2'"),
     (EchoWorker, True, TypeError, "concurrency must be an int or None, not True"),
     ("tests.workers.echo:EchoWorker", 0, ValueError, "concurrency must be >= 1, not 0"),
     (["python", "-m", "juicectl.child", "tests.workers.echo:EchoWorker"], 2, TypeError,
      r"concurrency=2 applies to a worker class or 'module:Class'; an argv list gives its "
      "own")],
    ids=["'2'", "True", "0", "with an argv list"],
)
def test_the_factory_checks_concurrency_before_it_starts_anything(
    worker: Any, concurrency: Any, error: type[Exception], message: str
) -> None:
    with ControllerFactory() as factory:
        with pytest.raises(error, match=message):
            factory(worker, concurrency=concurrency)
        assert factory.controllers == []
        assert pykka.ActorRegistry.get_all() == []
    if not isinstance(worker, list):
        with pytest.raises(error, match=message):
            worker_argv(worker, concurrency=concurrency)


class DeafProcess(pykka.ThreadingActor):
    """A process actor that reports its child ready, then ignores every order: stuck."""

    use_daemon_thread = True

    def __init__(self, controller: pykka.ActorRef[Any], generation: int) -> None:
        super().__init__()
        self.controller, self.generation = controller, generation

    def on_start(self) -> None:
        self.controller.tell(ChildProcessCreated(self.generation, 4242,
                                                 FakeConnection(self.generation)))

    def on_receive(self, message: Any) -> Any:
        return None  # not even StopChild


def test_a_stuck_process_actor_fails_the_teardown_soon_naming_its_controller() -> None:
    factory = ControllerFactory()
    ctl = factory(EchoWorker, name="deaf", stop_timeout=0.2, kill_timeout=0.1,
                  process_factory=lambda controller, generation, spec:
                  DeafProcess.start(controller, generation))
    ctl.get_process().get(timeout=10)
    failures: list[BaseException] = []

    def tear_down() -> None:
        try:
            factory.close_all()
        except BaseException as error:
            failures.append(error)

    teardown = threading.Thread(target=tear_down, daemon=True)
    teardown.start()
    # A bound, generous beside what the controller's own timeouts make it (under 7 s),
    # far under what they did not bound before (a minute).
    teardown.join(30)
    assert not teardown.is_alive(), "the teardown outlasted its controller's timeouts"
    assert [str(error) for error in failures] == [
        "1 process actor(s) outlived their controller: 'deaf' (generation 1); they and their "
        "children were stopped"
    ]
    assert not [ref for ref in pykka.ActorRegistry.get_all() if ref.is_alive()]


def test_worker_argv_refuses_what_a_child_cannot_import() -> None:
    class Local(JuiceChild):
        pass

    with pytest.raises(ValueError, match="cannot import"):
        worker_argv(Local)
    argv, env = worker_argv(EchoWorker, concurrency=3)
    assert argv[1:] == ["-m", "juicectl.child", "tests.workers.echo:EchoWorker",
                        "--concurrency", "3"]
    assert env["PYTHONPATH"].split(":")[0]


ENVY_WORKER = """
import os
from juicectl.child import JuiceChild
from juicectl.juice import Command, String

class Env(Command):
    arguments = [("name", String())]
    response = [("value", String())]

class EnvyWorker(JuiceChild):
    @Env.responder
    def env(self, name):
        return {"value": os.environ.get(name, "")}
"""


@pytest.mark.parametrize("given", ["env", "no env"])
def test_a_factory_given_an_env_still_lets_the_child_import_its_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    # The worker's module is importable here, but not from the child's working directory:
    # only its import root on the child's PYTHONPATH lets the child import it, and an env
    # of the test's own must not lose that.
    (tmp_path / "envy_worker.py").write_text(ENVY_WORKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("envy_worker")
    factory = ControllerFactory()
    try:
        options = {"env": {**os.environ, "FOO": "bar"}} if given == "env" else {}
        ctl = factory(module.EnvyWorker, cwd="/", **options)
        answer = ctl.call(module.Env, name="FOO", timeout=15)
        assert answer == {"value": "bar" if given == "env" else os.environ.get("FOO", "")}
    finally:
        factory.close_all()
        sys.modules.pop("envy_worker", None)


def test_threads_do_not_pile_up() -> None:
    before = threading.active_count()
    for _ in range(5):
        with connect(EchoWorker) as pair:
            pair.connection.call(Echo, value="x").get(timeout=5)
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= before


def test_scripted_answers_in_turn_and_a_scripted_crash() -> None:
    with scripted_controller({Echo: [CRASH, {"value": "second"}, {"value": "third"}]}) as ctl:
        first = ctl.get_process().get(timeout=5)
        with pytest.raises(ProcessUnavailable, match="crashed"):
            first.call(Echo, value="x").get(timeout=5)
        assert ctl.mode == "stopped"
        assert ctl.call(Echo, value="x", timeout=5) == {"value": "second"}
        assert ctl.call(Echo, value="x", timeout=5) == {"value": "third"}
        assert ctl.call(Echo, value="x", timeout=5) == {"value": "third"}  # the last repeats
        assert ctl.stats()["generation"] == 2
        assert len(ctl.worker.calls) == 4  # type: ignore[attr-defined]


@pytest.mark.parametrize("concurrency", [None, 2])
def test_a_scripted_crash_logs_nothing_like_a_bug(
    concurrency: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="juicectl")
    with scripted_controller({Echo: [CRASH, {"value": "HI"}]}, concurrency=concurrency) as ctl:
        first = ctl.get_process().get(timeout=5)
        with pytest.raises(ProcessUnavailable, match="crashed"):
            first.call(Echo, value="x").get(timeout=5)
        assert ctl.call(Echo, value="x", timeout=5) == {"value": "HI"}
        # The crashed child's thread is done with the request before the test looks.
        wait_for(lambda: not child_threads("fake", 1))
    loud = [(record.name, record.getMessage()) for record in caplog.records
            if record.levelno >= logging.WARNING or "answer" in record.getMessage()]
    assert loud == []


def test_crash_needs_an_in_memory_child() -> None:
    child = ScriptedChild({Echo: CRASH})
    with pytest.raises(RuntimeError, match="in memory"):
        child._respond("echo", Echo, {"value": "x"})
