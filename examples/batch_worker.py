"""The batch indexer worker: ``SetStore``, ``Index(path)``, ``Search(word)`` (and ``Crash``).

The index is a word -> {path: count} map, kept in memory and saved to ``index.json`` in the
store after each ``Index``, so a new child told the same store by ``SetStore`` picks up where
the last one stopped. Run it through the child runtime::

    python -m juicectl.child examples.batch_worker:BatchWorker

``examples/batch_parent.py`` runs it under a ``ProcessController`` whose ``prepare`` step
sends ``SetStore``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# Run from a checkout, as a script or with -m, whether juicectl is installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.batch_commands import Crash, Index, NoStore, NotText, Search, SetStore
from juicectl.child import JuiceChild, run

WORD = re.compile(r"\w+")


class BatchWorker(JuiceChild):
    """Indexes text files into a store directory and answers searches."""

    def __init__(self) -> None:
        self.store: Path | None = None
        self.index: dict[str, dict[str, int]] = {}

    @SetStore.responder
    def set_store(self, path: Path) -> dict[str, Any]:
        path.mkdir(parents=True, exist_ok=True)
        self.store = path
        saved = path / "index.json"
        self.index = json.loads(saved.read_text("utf-8")) if saved.exists() else {}
        documents = {doc for counts in self.index.values() for doc in counts}
        print(f"store {path}: {len(documents)} documents")  # stderr: the parent logs it
        return {"documents": len(documents)}

    @Index.responder
    def index_file(self, path: Path) -> dict[str, Any]:
        store = self._store()
        try:
            text = path.read_text("utf-8")
        except UnicodeDecodeError as exc:
            raise NotText(f"{path}: {exc.reason}") from exc
        counts = Counter(word.lower() for word in WORD.findall(text))
        key = str(path.resolve())
        for counts_by_path in self.index.values():
            counts_by_path.pop(key, None)  # re-indexing replaces the old counts
        for word, count in counts.items():
            self.index.setdefault(word, {})[key] = count
        self._save(store)
        return {"words": sum(counts.values()), "distinct": len(counts)}

    @Search.responder
    def search(self, word: str) -> dict[str, Any]:
        self._store()
        counts = self.index.get(word.lower(), {})
        hits = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return {"hits": [{"path": Path(path), "count": count} for path, count in hits]}

    @Crash.responder
    def crash(self) -> None:
        raise RuntimeError("crashing on request")

    def _store(self) -> Path:
        if self.store is None:
            raise NoStore("no store yet: send SetStore first")
        return self.store

    def _save(self, store: Path) -> None:
        # Write then rename: a crash mid-write never leaves a half-written index behind.
        temporary = store / "index.json.tmp"
        temporary.write_text(json.dumps(self.index), "utf-8")
        os.replace(temporary, store / "index.json")


if __name__ == "__main__":
    run(BatchWorker)
