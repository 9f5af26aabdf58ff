"""A launcher in miniature for the supervisor's signal test.

Starts a well-behaved child, one that ignores SIGTERM, and one that forks a grandchild; prints the
pids as JSON, then waits for a shutdown signal like `billing dev` does.
"""

from __future__ import annotations

import json
import sys

from devstack.processes import ChildSpec, Supervisor

SLEEPER = "import time; print('sleeping', flush=True); time.sleep(60)"
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    "print('ignoring SIGTERM', flush=True); time.sleep(60)"
)
FORKER = (
    "import subprocess, sys, time;"
    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
    "print(f'grandchild {p.pid}', flush=True); time.sleep(60)"
)


def main() -> int:
    supervisor = Supervisor(stop_timeout=1.0, colour=False)
    with supervisor.handle_signals(), supervisor:
        for name, code in (("sleeper", SLEEPER), ("stubborn", STUBBORN), ("forker", FORKER)):
            supervisor.start(ChildSpec(name, [sys.executable, "-c", code]))
        supervisor.announce(json.dumps({c.name: c.pid for c in supervisor.children}))
        supervisor.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
