"""Run the echo worker on another machine, through OpenSSH, and talk to it.

    python examples/remote_echo.py [user@]HOST [--port N] [--identity FILE] [--known-hosts FILE]
                                   [--pythonpath DIR] [--python PYTHON]
    python examples/remote_echo.py --here     (the same, behind an exec prefix on this machine)

The remote host needs Python 3 and juicectl (``pip install juicectl``, or a copy of the
package in ``--pythonpath DIR``); the remote shim that juicectl sends along needs nothing
else. Shows a call, a busy worker stopped (the stop resolves once the remote worker's group
is gone), and a worker killed on the remote host coming back over the same connection.
Ctrl-C ends it quietly (status 130), stopping the worker.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

# Ctrl-C ends the example quietly with status 130, even while the imports below run; like any
# exit it goes through the `finally` and `with` blocks, which stop the children.
signal.signal(signal.SIGINT, lambda _signum, _frame: sys.exit(130))

# Run from a checkout, whether juicectl is installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from juicectl import ProcessController, ProcessUnavailable, RestartPolicy, prefix, ssh
from juicectl.examples.echo import Echo, Sleep

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    # Examples may configure structlog; the library never does.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # stdout carries results
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host", nargs="?", help="[user@]host to run the worker on")
    parser.add_argument("--here", action="store_true",
                        help="run it here, behind an exec prefix (setsid --wait)")
    parser.add_argument("--port", type=int)
    parser.add_argument("--identity")
    parser.add_argument("--known-hosts")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="an ssh -o option (repeatable)")
    parser.add_argument("--pythonpath", help="where juicectl is on the remote host")
    parser.add_argument("--python", default="python3", help="the remote Python 3")
    args = parser.parse_args()
    if args.here == bool(args.host):
        parser.error("give a host, or --here")

    env = None
    if args.here:
        launcher = prefix(["setsid", "--wait"], python=args.python)
        argv = [sys.executable, "-m", "juicectl.child", "juicectl.examples.echo:EchoWorker"]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    else:
        user, _, host = args.host.rpartition("@")
        options = dict(option.split("=", 1) for option in args.option)
        launcher = ssh(host, user=user or None, port=args.port, identity=args.identity,
                       known_hosts=args.known_hosts, options=options, python=args.python)
        argv = [args.python, "-m", "juicectl.child", "juicectl.examples.echo:EchoWorker"]
    if args.pythonpath:
        # The worker's whole environment on the far side (None would keep the login's).
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": args.pythonpath}

    started = time.monotonic()
    with ProcessController.start(argv, name="remote-echo", launcher=launcher, env=env,
                                 restart=RestartPolicy(initial_delay=0.1, jitter=0.0),
                                 stop_timeout=1.0, kill_timeout=1.0) as controller:
        connection = controller.get_process().get(timeout=30)
        answer = connection.call(Echo, value="hello from afar").get(timeout=10)
        print(f"call: {answer} (first answer after {time.monotonic() - started:.2f} s)")

        busy = connection.call(Sleep, seconds=60)
        result = controller.stop_process().get(timeout=30)
        print(f"stopped while busy: {result.how}: {result.reason.describe()}")
        try:
            busy.get(timeout=10)
        except ProcessUnavailable:
            print("the busy request failed with ProcessUnavailable, as it must")

        again = time.monotonic()
        connection = controller.get_process().get(timeout=30)
        how = " (over the same ssh connection)" if args.host else ""
        print(f"started again in {time.monotonic() - again:.2f} s{how}")
        print(f"call: {connection.call(Echo, value='again').get(timeout=10)}")
    print("closed: the worker, the connection and its socket directory are gone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
