"""A parent process for the remote tests where the parent itself dies: it starts a
controller of the test worker on the test sshd, makes the worker busy with grandchildren,
prints the local pids (the ssh client and the connection master) and the master's control
directory on a line, and waits to be killed.

    python parent.py PORT LIB MARK HARNESS_ROOT USER
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from juicectl import ProcessController
from tests.remote.worker import Sleep, Spawn


def main() -> None:
    port, lib, mark, root, user = sys.argv[1:6]
    from juicectl import ssh

    launcher = ssh("127.0.0.1", user=user, port=int(port), identity=f"{root}/client_ed25519",
                   known_hosts=f"{root}/known_hosts", config="/dev/null",
                   options={"HostKeyAlias": "juicectl-test-host"})
    controller = ProcessController.start(
        ["python3", "-m", "juicectl.child", "remote_worker:Worker"], launcher=launcher,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": lib,
             "JUICECTL_TEST_MARK": mark},
    )
    connection = controller.get_process().get(timeout=30)
    connection.call(Spawn).get(timeout=30)
    connection.call(Sleep, seconds=600)
    session = controller.launch_session
    master = getattr(session, "master_pid", None)
    directory = getattr(session, "control_directory", None)
    print(f"{connection.pid} {master} {directory}", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main()
