"""Runnable examples of juicectl: see each module, and docs/workers.md."""
