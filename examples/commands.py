"""Commands shared by the echo example's parent (``echo_parent.py``) and worker
(``echo_worker.py``): both sides import the same classes, so they cannot disagree.

They ship with juicectl, in :mod:`juicectl.examples.echo`; this module names them for the
examples of this repository.
"""

from __future__ import annotations

from juicectl.examples.echo import Echo, Fail, Sleep

__all__ = ["Echo", "Fail", "Sleep"]
