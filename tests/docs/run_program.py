"""Runs one program of a documentation page, the way a reader runs a script.

``python run_program.py SPEC.json``: the spec lists the program's blocks (page, first line,
code). They run in order in one fresh ``__main__`` module, compiled with the page's name and
line numbers so that a traceback points into the page. After each block, the ``test_*``
functions it defined are called (``tmp_path``: a new directory). It imports nothing of the
repository: it runs in the bare environment where the wheel is installed, copied into the
page's directory (which is thus first on ``sys.path``, as a script's own directory is).
"""

from __future__ import annotations

import inspect
import json
import sys
import tempfile
import types
from pathlib import Path


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text("utf-8"))
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = module  # dataclasses, pickle and pykka look names up here
    namespace = module.__dict__
    for block in spec["blocks"]:
        before = set(namespace)
        code = compile("\n" * (block["line"] - 1) + block["code"], block["page"], "exec")
        exec(code, namespace)
        for name in [n for n in namespace if n not in before and n.startswith("test_")]:
            function = namespace[name]
            if not callable(function):
                continue
            arguments = {}
            for parameter in inspect.signature(function).parameters:
                if parameter != "tmp_path":
                    raise SystemExit(
                        f"{block['page']}:{block['line']}: {name} asks for fixture "
                        f"{parameter!r}; mark the block <!-- pytest --> to run it with pytest"
                    )
                arguments["tmp_path"] = Path(tempfile.mkdtemp(dir=spec["tmp"]))
            function(**arguments)


if __name__ == "__main__":
    main(sys.argv[1])
