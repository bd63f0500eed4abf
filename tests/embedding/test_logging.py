"""juicectl in someone else's program: its log follows the program's configuration, if any.

Each case runs a small application in a subprocess and reads its stdout, stderr and exit
status. The application supervises a worker whose handler ``print()``s (the child's stderr,
which the parent logs as ``child_stderr`` events), makes a call, and starts a second controller
whose program does not exist (a ``launch_failed`` warning). The application prints its own
results on stdout.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from juicectl._log import get_logger

WORKER = '''
from juicectl.child import JuiceChild
from juicectl.juice import Command, String

class Echo(Command):
    arguments = [("value", String())]
    response = [("value", String())]

class Worker(JuiceChild):
    @Echo.responder
    def echo(self, value):
        print("worker says hello")      # the child's stderr: the parent logs it
        return {"value": value}
'''

APP = '''
import sys
from pathlib import Path

{setup}

from juicectl import ProcessController, ProcessLaunchError, RestartPolicy
from chatty_worker import Echo

here = Path(__file__).parent
ctl = ProcessController.start(
    [sys.executable, "-m", "juicectl.child", "chatty_worker:Worker"], name="app", cwd=str(here)
)
print(ctl.call(Echo, value="hi", timeout=10)["value"])
bad = ProcessController.start(
    ["/no/such/program"], name="bad", restart=RestartPolicy(mode="temporary")
)
try:
    bad.get_process().get(timeout=10)
except ProcessLaunchError:
    print("launch failed")
bad.close()
print(ctl.close().how)
{after}
'''

APP_OUTPUT = "hi\nlaunch failed\nclean\n"
INFO_EVENTS = ("controller_started", "launched", "ready", "child_stderr", "stop_step", "exited")


def run_app(tmp_path: Path, setup: str = "", after: str = "") -> subprocess.CompletedProcess[str]:
    (tmp_path / "chatty_worker.py").write_text(WORKER, "utf-8")
    app = tmp_path / "app.py"
    app.write_text(APP.format(setup=textwrap.dedent(setup), after=textwrap.dedent(after)), "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(
        [sys.executable, str(app)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_nothing_configured_keeps_stdout_clean_and_warnings_on_stderr(tmp_path: Path) -> None:
    result = run_app(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == APP_OUTPUT
    # stdlib's last-resort handler: warnings and errors, as bare messages, on stderr.
    [warning] = [line for line in result.stderr.splitlines() if line.strip()]
    assert warning.startswith("launch_failed controller=bad generation=1 argv=['/no/such/program']")
    assert "No such file or directory" in warning
    for event in INFO_EVENTS:
        assert event not in result.stderr
    assert "worker says hello" not in result.stderr


def test_structlog_configured_gets_every_event_with_its_context(tmp_path: Path) -> None:
    result = run_app(tmp_path, setup="""
        import structlog
        structlog.configure(
            processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
            logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        )
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout == APP_OUTPUT
    events = json_lines(result.stderr)
    names = {event["event"] for event in events}
    assert set(INFO_EVENTS) | {"launch_failed"} <= names
    [launched] = [e for e in events if e["event"] == "launched" and e["controller"] == "app"]
    assert launched["level"] == "info" and launched["generation"] == 1
    assert isinstance(launched["pid"], int)
    [said] = [e for e in events if e["event"] == "child_stderr"]
    assert said["line"] == "worker says hello"
    assert (said["controller"], said["pid"]) == ("app", launched["pid"])
    [failed] = [e for e in events if e["event"] == "launch_failed"]
    assert failed["level"] == "warning" and failed["controller"] == "bad"


def test_structlog_filtering_quiets_juicectl_too(tmp_path: Path) -> None:
    result = run_app(tmp_path, setup="""
        import logging
        import structlog
        structlog.configure(
            processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
            wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
            logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        )
    """)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == (APP_OUTPUT, "")


def test_stdlib_logging_configured_gets_every_event_with_its_context(tmp_path: Path) -> None:
    result = run_app(
        tmp_path,
        setup="""
            import logging
            logging.basicConfig(
                level=logging.INFO, stream=sys.stderr,
                format="%(levelname)s %(name)s %(module)s %(message)s",
            )
            records = []
            class Keep(logging.Handler):
                def emit(self, record):
                    records.append(record)
            logging.getLogger("juicectl").addHandler(Keep())
        """,
        after="""
            import json
            [launched] = [r for r in records if r.event == "launched" and r.controller == "app"]
            print(json.dumps({"pid": launched.pid, "generation": launched.generation,
                              "argv": launched.argv, "name": launched.name}))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(APP_OUTPUT)
    record = json.loads(result.stdout[len(APP_OUTPUT):])
    assert record["generation"] == 1 and isinstance(record["pid"], int)
    assert record["argv"][1:] == ["-m", "juicectl.child", "chatty_worker:Worker"]
    assert record["name"] == "juicectl.actors.process"
    lines = result.stderr.splitlines()
    # The record names the module that logged, and the message carries the key-values.
    assert any(
        line.startswith("INFO juicectl.actors.process process launched controller=app "
                        f"generation=1 pid={record['pid']} argv=")
        for line in lines
    ), result.stderr
    assert any("child_stderr" in line and "line='worker says hello'" in line for line in lines)
    assert any(line.startswith("WARNING juicectl.actors.process process launch_failed "
                               "controller=bad") for line in lines)


@pytest.mark.parametrize("level", ["WARNING", "CRITICAL"])
def test_stdlib_level_on_the_juicectl_logger_quiets_it(tmp_path: Path, level: str) -> None:
    result = run_app(tmp_path, setup=f"""
        import logging
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
        logging.getLogger("juicectl").setLevel(logging.{level})
        logging.getLogger("app").info("the app's own line")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout == APP_OUTPUT
    lines = result.stderr.splitlines()
    assert lines[0] == "app the app's own line"
    expected = ["juicectl.actors.process launch_failed"] if level == "WARNING" else []
    assert [" ".join(line.split()[:2]) for line in lines[1:]] == expected


# --- the mechanism, in process ---------------------------------------------------------------


def test_stdlib_records_keep_the_key_values(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("juicectl.tests").bind(controller="c", pid=7)
    with caplog.at_level(logging.DEBUG, logger="juicectl"):
        log.warning("unexpected_message", message="Hello()", event_type="x y")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("hook_failed", hook="h")
    first, second = caplog.records
    assert first.getMessage() == (
        "unexpected_message controller=c pid=7 message=Hello() event_type='x y'"
    )
    assert (first.levelno, first.name, first.module) == (logging.WARNING, "juicectl.tests",
                                                         "test_logging")
    extra = (first.event, first.controller, first.pid, first.message_)  # type: ignore[attr-defined]
    assert extra == ("unexpected_message", "c", 7, "Hello()")
    assert second.levelno == logging.ERROR and second.exc_info is not None
    assert second.exc_info[0] is ValueError


def test_a_disabled_level_is_not_formatted(caplog: pytest.LogCaptureFixture) -> None:
    class Loud:
        def __repr__(self) -> str:
            raise AssertionError("formatted although nobody listens")

    with caplog.at_level(logging.WARNING, logger="juicectl"):
        get_logger("juicectl.tests").info("late_answer_dropped", tag=Loud())
    assert caplog.records == []


def test_capture_logs_sees_events_of_loggers_bound_before_it() -> None:
    log = get_logger("juicectl.tests").bind(controller="c")
    with capture_logs() as first:
        log.info("one", n=1)
    with capture_logs() as second:
        log.debug("two")
    assert first == [{"controller": "c", "n": 1, "event": "one", "log_level": "info"}]
    assert second == [{"controller": "c", "event": "two", "log_level": "debug"}]
