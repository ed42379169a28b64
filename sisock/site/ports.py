"""Local TCP ports: pick a free one, wait until one accepts connections.

Used by ``sisock demo``, the tests and the benchmarks, which start servers
on loopback ports of their own.
"""

from __future__ import annotations

import socket
import subprocess
import time


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None, host: str = "127.0.0.1") -> None:
    """Block until ``host:port`` accepts connections.

    Parameters
    ----------
    port : int
        The port.
    timeout : float
        Seconds to wait at most.
    proc : subprocess.Popen, optional
        The process expected to listen: waiting stops if it exits.
    host : str
        The address.

    Raises
    ------
    RuntimeError
        If ``proc`` exited first.
    TimeoutError
        If the port did not open in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited early with code {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {host}:{port} not open after {timeout} s")
