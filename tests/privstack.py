"""A private sisock stack for fault tests: its own router, home and port.

The session-wide router in ``conftest.py`` is shared by every test; fault
tests that ``kill -9`` a router use one of these instead, so no other test
sees the outage. Everything runs as real processes (``python -m sisock``).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from conftest import Proc, free_port, wait_port

ENV_DROP = (
    "SISOCK_USER",
    "SISOCK_SECRET",
    "WAMP_USER",
    "WAMP_SECRET",
    "SISOCK_TLS_CA",
    "SISOCK_REALM",
    "SISOCK_BASE_URI",
)


class PrivateStack:
    """Router, hub and nodes under ``root`` on a free port.

    Parameters
    ----------
    root : pathlib.Path
        Directory for ``SISOCK_HOME``, logs and data.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.log_dir = root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
        env.update(SISOCK_HOME=str(self.home), SISOCK_ROUTER_URL=self.url)
        self.env = env
        self.router = Proc("router", ["router", "--loglevel", "warn"], self.log_dir, env)
        self.procs: list[Proc] = []
        self._n = 0

    def start_router(self) -> float:
        """Start the router; seconds until it accepts connections."""
        t0 = time.monotonic()
        self.router.start()
        wait_port(self.port, 60, self.router.proc)
        return time.monotonic() - t0

    def kill_router(self) -> None:
        """``kill -9`` the router's whole process group; wait until its port is closed."""
        assert self.router.proc is not None
        try:
            os.killpg(self.router.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.router.proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    time.sleep(0.05)
            except OSError:
                return

    def start(self, name: str, *args: str, env: dict | None = None) -> Proc:
        """Start ``python -m sisock ARGS`` with this stack's environment."""
        self._n += 1
        p = Proc(f"{name}-{self._n}", list(args), self.log_dir, {**self.env, **(env or {})})
        self.procs.append(p.start())
        return p

    def connect(self, **kw):
        """A consumer client of this stack."""
        from sisock.client import connect

        return connect(self.url, home=str(self.home), **kw)

    def stop(self) -> None:
        """Stop every process (nodes first, router last)."""
        for p in reversed(self.procs):
            p.stop()
        self.router.stop()
