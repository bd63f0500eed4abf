"""Index text files with the batch worker under a ProcessController, survive a crash.

    python examples/batch_parent.py [FILE ...]      (default: the example files themselves)

The controller's ``prepare`` step sends ``SetStore`` to every new child before any caller's
command reaches it: after the worker crashes, the next child is pointed at the same store and
finds the index there. Ctrl-C ends it quietly (status 130), stopping the child.
"""

from __future__ import annotations

import logging
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Ctrl-C ends the example quietly with status 130, even while the imports below run; like any
# exit it goes through the `finally` and `with` blocks, which stop the children.
signal.signal(signal.SIGINT, lambda _signum, _frame: sys.exit(130))

# Run from a checkout, whether juicectl is installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from examples.batch_commands import Crash, Index, Search, SetStore
from juicectl import Connection, ProcessController, ProcessUnavailable, RestartPolicy
from juicectl.juice import Command, UnhandledRemoteJuiceError

ROOT = Path(__file__).resolve().parent.parent


def call(ctl: ProcessController, command: type[Command], **arguments: Any) -> dict[str, Any]:
    """Send one request, retrying while the child is unavailable (the seed's transient error):
    between a crash and the restart, the old connection fails and the new one is not there yet.
    """
    for _ in range(50):
        try:
            conn = ctl.get_process().get(timeout=10)
            result: dict[str, Any] = conn.call(command, **arguments).get(timeout=10)
            return result
        except ProcessUnavailable:
            time.sleep(0.1)
    raise RuntimeError("the worker did not come back")


def main(argv: list[str]) -> int:
    # Examples may configure structlog; the library never does.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # stdout carries results
    )
    files = [Path(arg) for arg in argv] or sorted((ROOT / "examples").glob("*.py"))

    with tempfile.TemporaryDirectory(prefix="juicectl-index-") as store:

        def prepare(conn: Connection) -> Any:
            return conn.call(SetStore, path=Path(store))  # the controller waits for it

        ctl = ProcessController.start(
            [sys.executable, "-m", "juicectl.child", "examples.batch_worker:BatchWorker"],
            name="indexer",
            cwd=str(ROOT),
            prepare=prepare,
            restart=RestartPolicy(initial_delay=0.1),
        )
        try:
            conn = ctl.get_process().get(timeout=10)
            futures = [(path, conn.call(Index, path=path)) for path in files]  # pipelined
            total = 0
            for path, future in futures:
                answer = future.get(timeout=10)
                total += answer["words"]
                print(
                    f"indexed {path.name}: {answer['words']} words, {answer['distinct']} distinct"
                )
            print(f"{len(files)} files, {total} words")

            for word in ("worker", "store"):
                hits = call(ctl, Search, word=word)["hits"]
                print(f"{word!r}:", ", ".join(f"{h['path'].name} ({h['count']})" for h in hits))

            pid = ctl.stats().get("pid")
            try:
                conn.call(Crash).get(timeout=10)
            except UnhandledRemoteJuiceError as exc:
                print(f"child {pid} crashed on purpose: {exc}")

            # Retried until a new child answers; prepare already told it the store.
            hits = call(ctl, Search, word="worker")["hits"]
            print(f"child {ctl.stats().get('pid')} still finds 'worker' in {len(hits)} files")
        finally:
            result = ctl.close()
            print("stopped:", result.how if result is not None else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
