"""A batch indexer with two workers behind one ProcessPool; one worker is killed mid-batch.

    python examples/pool_indexer.py [FILE ...]      (default: the repository's Python files)

The workers (``WordCounter``, in this file, served by ``python -m juicectl.child``) count the
words of one file per request; the parent sends every file through the pool, merges the counts
into an index, and answers a few searches. Halfway through, it SIGKILLs one worker: that
worker's running request fails, the ones it had not started go to the other worker, and the
pool restarts it while the other serves. Ctrl-C ends it quietly (status 130), stopping both
workers.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import signal
import sys
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
        return {"words": [{"word": w, "count": c} for w, c in counts.items()],
                "pid": os.getpid()}


def main(argv: list[str]) -> int:
    import structlog

    from juicectl import ProcessPool, ProcessUnavailable

    # Examples may configure structlog; the library never does.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # stdout carries results
    )
    files = [Path(arg) for arg in argv] or sorted(ROOT.glob("juicectl/**/*.py"))
    worker = [sys.executable, "-m", "juicectl.child", "examples.pool_indexer:WordCounter"]

    index: dict[str, dict[Path, int]] = collections.defaultdict(dict)
    by_worker: collections.Counter[int] = collections.Counter()
    failed: list[Path] = []
    with ProcessPool.start(worker, size=2, name="indexer", cwd=str(ROOT)) as pool:
        futures = {path: pool.call(CountWords, path=path.resolve()) for path in files}
        killed = False
        for number, (path, future) in enumerate(futures.items()):
            if not killed and number == len(futures) // 2:
                busy = [w for w in pool.stats()["workers"] if w["in_flight"]]
                if busy:  # kill a worker with requests outstanding
                    os.kill(busy[0]["pid"], signal.SIGKILL)
                    print(f"killed worker {busy[0]['pid']} with {busy[0]['in_flight']} "
                          "requests outstanding")
                killed = True
            try:
                answer = future.get(timeout=30)
            except ProcessUnavailable:
                failed.append(path)  # it was running when its worker died
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
