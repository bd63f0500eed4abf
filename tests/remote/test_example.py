"""``examples/remote_echo.py`` runs as its docstring says: on the test sshd, and here."""

from __future__ import annotations

import subprocess
import sys

from tests.remote.harness import HOST_ALIAS, ROOT, Harness, Sshd


def run_example(*args: str) -> str:
    done = subprocess.run([sys.executable, "examples/remote_echo.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_example_on_another_host(harness: Harness, sshd: Sshd) -> None:
    stdout = run_example(
        f"{harness.user}@127.0.0.1", "--port", str(sshd.port),
        "--identity", str(harness.client_key), "--known-hosts", str(harness.known_hosts),
        "--option", f"HostKeyAlias={HOST_ALIAS}", "--pythonpath", str(harness.lib),
    )
    assert "call: {'value': 'hello from afar'}" in stdout
    assert "stopped while busy: stdin_closed: " in stdout
    assert "the shim ended it with SIGTERM" in stdout
    assert "(over the same ssh connection)" in stdout
    assert "call: {'value': 'again'}" in stdout


def test_the_example_here() -> None:
    stdout = run_example("--here")
    assert "stopped while busy: stdin_closed: " in stdout
    assert "call: {'value': 'again'}" in stdout
