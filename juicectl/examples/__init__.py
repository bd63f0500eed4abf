"""Small workers that ship with juicectl, so the documentation's examples run anywhere.

* :mod:`juicectl.examples.echo`: ``EchoWorker`` and its commands ``Echo``, ``Fail`` (a
  declared error) and ``Sleep``. Serve it with
  ``python -m juicectl.child juicectl.examples.echo:EchoWorker``.

Like any worker module, they import the codec and the child runtime only.
"""
