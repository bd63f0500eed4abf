"""The real peer as the parent: Divmod epsilon 0.8.0 (``epsilon.juice``) on Twisted drives our
child over its stdin and stdout, and prints what happened as JSON lines on stdout.

    python tests/child/epsilon_parent.py [worker]   (default: tests.workers.runtime:TestWorker)

Each line is ``{"step": ..., ...}``; the last one is ``{"step": "done", "ok": true}``, or
``{"step": "failed", ...}``. ``test_child_interop.py`` runs it and checks the lines.

A Twisted ``ProcessProtocol`` bridges the child's pipes to an ``epsilon.juice.Juice`` protocol
instance: child stdout -> ``Juice.dataReceived``, ``Juice`` writes -> child stdin.
"""

# mypy: ignore-errors
# (Twisted and epsilon are untyped here; this script is glue around them.)

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from epsilon import juice
from twisted.internet import defer, protocol, reactor
from twisted.python import log

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0


def emit(step: str, **fields: Any) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


# The reference's commands. epsilon's String passes str through and its serializer encodes it
# as UTF-8; its Unicode argument does not work on Python 3 (it calls str.decode).
class Echo(juice.Command):
    commandName = "Echo"
    arguments = [("value", juice.String())]
    response = [("value", juice.String())]


class Fail(juice.Command):
    commandName = "Fail"
    arguments = [("message", juice.String())]
    errors = {ValueError: "BAD_VALUE"}


class Double(juice.Command):
    commandName = "Double"
    arguments = [("value", juice.Integer())]
    response = [("value", juice.Integer())]


class AskParent(juice.Command):
    commandName = "AskParent"
    arguments = [("value", juice.Integer())]
    response = [("value", juice.Integer())]


class Nope(juice.Command):
    commandName = "Nope"


class Shutdown(juice.Command):
    commandName = "Shutdown"


class ParentJuice(juice.Juice):
    """The parent's protocol: it also answers ``Double``, which the child calls."""

    def command_DOUBLE(self, value: int) -> dict[str, int]:
        return {"value": value * 2}

    # epsilon dispatches "Double" to command_DOUBLE and reads the command from it.
    command_DOUBLE.command = Double  # type: ignore[attr-defined]


class _PipeTransport:
    """What ``Juice`` needs from a transport, on top of the child's stdin."""

    disconnecting = False

    def __init__(self, process: Any) -> None:
        self._process = process

    def write(self, data: bytes) -> None:
        self._process.write(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self._process.writeSequence(data)

    def loseConnection(self) -> None:
        self.disconnecting = True
        self._process.closeStdin()

    def getPeer(self) -> str:
        return "child"

    def getHost(self) -> str:
        return "parent"


class ChildBridge(protocol.ProcessProtocol):
    """Feeds the child's stdout to a Juice instance; reports how the child ended.

    The child's stderr is kept (not printed) so that stdout carries only the JSON lines.
    """

    def __init__(self) -> None:
        self.juice = ParentJuice(False)
        self.ended: defer.Deferred[int | None] = defer.Deferred()
        self.stderr = b""

    def connectionMade(self) -> None:
        self.juice.makeConnection(_PipeTransport(self.transport))

    def outReceived(self, data: bytes) -> None:
        self.juice.dataReceived(data)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Any) -> None:
        self.juice.connectionLost(reason)
        self.ended.callback(reason.value.exitCode)


def spawn(worker: str) -> ChildBridge:
    bridge = ChildBridge()
    argv = [sys.executable, "-m", "juicectl.child", worker]
    reactor.spawnProcess(bridge, sys.executable, argv, env=dict(os.environ), path=str(ROOT))
    return bridge


VALUES = [
    "plain",
    "a\r\nb",
    "\r\nleading and trailing\r\n",
    "unicode: ünïcødé ✓ 日本語 🎉",
    "",
    " leading space",
    "key: value",
]


@defer.inlineCallbacks
def scenario(worker: str) -> Any:
    bridge = spawn(worker)
    proto = bridge.juice

    answer = yield juice.Negotiate(versions=[1]).do(proto)
    emit("negotiate", version=answer["version"])

    echoed = []
    for value in VALUES:
        answer = yield Echo(value=value).do(proto)
        echoed.append(answer["value"])
    emit("echo", sent=VALUES, received=echoed)

    calls = [Echo(value=f"pipelined {i} ✓").do(proto) for i in range(200)]
    answers = yield defer.gatherResults(calls)
    received = [a["value"] for a in answers]
    emit(
        "pipelined",
        count=len(received),
        in_order=received == [f"pipelined {i} ✓" for i in range(200)],
    )

    try:
        yield Fail(message="declared\r\nfailure").do(proto)
    except ValueError as exc:
        emit("declared_error", type="ValueError", description=str(exc))

    answer = yield Echo(value="still serving").do(proto)
    emit("after_error", value=answer["value"])

    answer = yield AskParent(value=21).do(proto)
    emit("child_called_parent", value=answer["value"])

    answer = yield Shutdown().do(proto)
    emit("shutdown", answer=dict(answer))
    code = yield bridge.ended
    emit("exit", code=code)

    # A second child: an unknown command is answered UNHANDLED, then the child exits 0.
    bridge = spawn(worker)
    try:
        yield Nope().do(bridge.juice)
    except juice.RemoteJuiceError as exc:
        code_sent = exc.errorCode
        emit(
            "unknown_command",
            type=type(exc).__name__,
            code=code_sent.decode() if isinstance(code_sent, bytes) else code_sent,
            description=exc.description,
        )
    code = yield bridge.ended
    emit("exit_after_unhandled", code=code)


def main() -> int:
    worker = sys.argv[1] if len(sys.argv) > 1 else "tests.workers.runtime:TestWorker"
    outcome: dict[str, Any] = {"ok": False}

    def done(_: object) -> None:
        outcome["ok"] = True
        emit("done", ok=True)

    def failed(failure: Any) -> None:
        emit("failed", error=failure.getTraceback())

    def timed_out() -> None:
        emit("failed", error=f"timed out after {TIMEOUT} s")
        reactor.stop()

    log.startLogging(sys.stderr, setStdout=False)
    guard = reactor.callLater(TIMEOUT, timed_out)
    d = scenario(worker)
    d.addCallbacks(done, failed)
    d.addBoth(lambda _: guard.active() and guard.cancel())
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    return 0 if outcome["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
