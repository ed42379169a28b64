"""A private sisock stack for benchmarks: router, hub and nodes in a temporary SISOCK_HOME.

Used by ``bench_replicas.py`` and ``bench_proxies.py``; a script with
``from benchstack import BenchStack`` runs from any directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sisock.site.ports import free_port, wait_port


def write_archive(directory: Path, n: int, rate: float = 100.0) -> tuple[float, float]:
    """Write one timeline ``tl`` with a float field ``x`` of ``n`` samples; return (start, end)."""
    from sisock.archive.writer import ArchiveWriter
    from sisock.core.protocol import FieldSpec

    start = float(np.floor(time.time() - n / rate - 60))
    t = start + np.arange(n) / rate
    x = np.random.default_rng(0).normal(size=n)
    with ArchiveWriter(directory, rotate_seconds=1e9, rotate_bytes=2**40) as w:
        w.define_timeline("tl", {"x": FieldSpec("number")})
        for i in range(0, n, 1_000_000):
            w.append("tl", t[i : i + 1_000_000], {"x": x[i : i + 1_000_000]})
    return start, start + n / rate


class BenchStack:
    """Router (optionally with proxy workers), hub and data nodes as child processes.

    Parameters
    ----------
    home : pathlib.Path
        A fresh ``SISOCK_HOME``.
    proxies : int
        Proxy workers in front of the router worker (``sisock router --proxies``).
    tls : bool
        Serve ``wss://`` (development CA in ``home``).
    """

    def __init__(self, home: Path, proxies: int = 0, tls: bool = False) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"{'wss' if tls else 'ws'}://127.0.0.1:{self.port}/ws"
        self.proxies = proxies
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SISOCK_", "WAMP_"))}
        self.env.update(SISOCK_HOME=str(home), SISOCK_ROUTER_URL=self.url)
        os.environ.update(SISOCK_HOME=str(home), SISOCK_ROUTER_URL=self.url)
        self.procs: list[subprocess.Popen] = []

    def spawn(self, *argv: str) -> subprocess.Popen:
        """Start ``sisock ARGV`` in its own process group."""
        log = open(self.home / f"{len(self.procs)}-{argv[0]}.log", "ab")
        p = subprocess.Popen(
            [sys.executable, "-m", "sisock", *argv],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def start(self) -> "BenchStack":
        """Start the router and the hub; return once the hub answers."""
        argv = ["router", "--loglevel", "warn"]
        if self.proxies:
            argv += ["--proxies", str(self.proxies)]
        router = self.spawn(*argv)
        wait_port(self.port, 60, router)
        self.spawn("hub")
        self.wait(lambda c: c.nodes() is not None, "hub")
        return self

    def wait(self, predicate, what: str, timeout: float = 60) -> None:
        """Poll ``predicate(client)`` until true."""
        from sisock.client import ClientError, connect

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with connect(timeout=10) as c:
                    while time.monotonic() < deadline:
                        try:
                            if predicate(c):
                                return
                        except ClientError:
                            pass
                        time.sleep(0.1)
            except ClientError:
                time.sleep(0.2)
        raise TimeoutError(f"{what} not ready after {timeout} s")

    def stop_proc(self, p: subprocess.Popen) -> None:
        """Stop one child (SIGTERM to its group, then SIGKILL)."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """Stop every child, nodes first."""
        for p in reversed(self.procs):
            self.stop_proc(p)

    def __enter__(self) -> "BenchStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
