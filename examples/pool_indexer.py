"""A batch indexer with two workers behind one ProcessPool; one worker is killed mid-batch.

    python examples/pool_indexer.py [FILE ...]      (default: the repository's Python files)

The workers (``WordCounter``, in this file, served by ``python -m juicectl.child``) count the
words of one file per request; the parent sends every file through the pool, merges the counts
into an index, and answers a few searches. Halfway through, it SIGKILLs the worker with the
most requests outstanding: the file that worker was counting fails (the parent sends it
again), the ones queued behind it go to the other worker, and the pool restarts it while the
other serves. The batch goes out once both workers serve, so each has half of it queued, and
each file takes at least ``WORK`` seconds (a stand-in for real parsing): the kill always finds
a worker counting a file with more behind it. Ctrl-C ends it quietly (status 130), stopping
both workers.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

# Ctrl-C ends the example quietly with status 130, even while the imports below run; like any
# exit it goes through the `finally` and `with` blocks, which stop the children.
signal.signal(signal.SIGINT, lambda _signum, _frame: sys.exit(130))

# Run from a checkout, whether juicectl is installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from juicectl.child import JuiceChild
from juicectl.juice import BoxList, Command, Integer, String
from juicectl.juice import Path as PathArgument

ROOT = Path(__file__).resolve().parent.parent
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
WORK = 0.02
"""Seconds each file takes at least, so that the batch outlasts the kill."""


class NotText(Exception):
    """The file is not UTF-8 text."""


class CountWords(Command):
    """The words of the text file ``path``, each with its count."""

    arguments = [("path", PathArgument())]
    response = [("words", BoxList([("word", String()), ("count", Integer())])),
                ("pid", Integer())]
    errors = {FileNotFoundError: "NOT_FOUND", NotText: "NOT_TEXT"}


class WordCounter(JuiceChild):
    """One file per request, one request at a time (the default)."""

    @CountWords.responder
    def count_words(self, path: Path) -> dict[str, Any]:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise NotText(str(path)) from None
        counts = collections.Counter(word.lower() for word in WORD.findall(text))
        time.sleep(WORK)
        return {"words": [{"word": w, "count": c} for w, c in counts.items()],
                "pid": os.getpid()}


def kill_the_busiest(pool: Any) -> int | None:
    """SIGKILL the worker with the most requests outstanding, if it has two or more (one it
    counts, one queued: each takes ``WORK`` seconds, so the kill finds one still to answer
    however fast it comes); return its pid."""
    busiest = max(pool.stats()["workers"], key=lambda worker: worker["in_flight"])
    if busiest["in_flight"] < 2:
        return None  # too few files left for the kill to show anything
    os.kill(busiest["pid"], signal.SIGKILL)
    return int(busiest["pid"])


def main(argv: list[str]) -> int:
    import structlog

    from juicectl import ProcessPool, ProcessUnavailable

    # Examples may configure structlog; the library never does. The kill is on purpose, so its
    # warning (worker_lost) is left out: the example tells what became of the requests itself.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # stdout carries results
    )
    files = [Path(arg) for arg in argv] or sorted(ROOT.glob("juicectl/**/*.py"))
    worker = [sys.executable, "-m", "juicectl.child", "examples.pool_indexer:WordCounter"]

    index: dict[str, dict[Path, int]] = collections.defaultdict(dict)
    by_worker: collections.Counter[int] = collections.Counter()
    failed: list[Path] = []
    with ProcessPool.start(worker, size=2, name="indexer", cwd=str(ROOT)) as pool:
        for _ in range(1000):  # the batch goes once both serve: each gets half of it at once
            if sum(w["state"] == "ready" for w in pool.stats()["workers"]) == 2:
                break
            time.sleep(0.01)
        futures = {path: pool.call(CountWords, path=path.resolve()) for path in files}
        for number, (path, future) in enumerate(futures.items()):
            if number == len(futures) // 2:
                killed = kill_the_busiest(pool)
                print(f"killed worker {killed} mid-batch, with requests outstanding" if killed
                      else "killed no worker: too few files left")
            try:
                answer = future.get(timeout=30)
            except ProcessUnavailable:
                failed.append(path)  # the file its worker was counting when it died
                continue
            by_worker[answer["pid"]] += 1
            for entry in answer["words"]:
                index[entry["word"]][path] = entry["count"]
        stats = pool.stats()
        print(f"indexed {sum(by_worker.values())} of {len(files)} files with "
              f"{len(by_worker)} worker processes; re-sent {stats['resent']}, "
              f"failed {len(failed)}")
        for path in failed:  # a request that failed may be sent again by the caller
            answer = pool.call(CountWords, path=path.resolve()).get(timeout=30)
            for entry in answer["words"]:
                index[entry["word"]][path] = entry["count"]
        print(f"after retrying the failed: {len({p for hits in index.values() for p in hits})}"
              f" files, {len(index)} distinct words")
    for word in ("pool", "worker", "future"):
        hits = sorted(index.get(word, {}).items(), key=lambda item: -item[1])[:3]
        shown = ", ".join(f"{path.name} ({count})" for path, count in hits)
        print(f"{word!r}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
