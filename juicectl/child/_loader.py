"""Find a worker class by name: ``"package.module:Worker"`` (the child and the CLI use it)."""

from __future__ import annotations

import importlib

__all__ = ["load_worker"]


def load_worker(spec: str) -> object:
    """Import ``"package.module:Name"`` (``Name`` may be dotted: ``Outer.Inner``); return it.

    Raises:
        ValueError: ``spec`` has no ``:`` or names nothing.
        ImportError: the module cannot be imported.
        AttributeError: the module has no such attribute.
    """
    module_name, sep, qualname = spec.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"expected package.module:WorkerClass, got {spec!r}")
    obj: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj
