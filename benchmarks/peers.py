"""The peers the fetch benchmarks measure beside sisock, in the same run.

* raw TCP between two Python processes: :func:`tcp_sender` holds the
  arrays in memory and ``sendall``\\ s the last *n* samples a client asks
  for; :func:`tcp_fetch` ``recv_into`` preallocated arrays (the wire's
  limit on this machine, nothing between the two ends);
* tiled (``tiled[all]``) serving the same arrays from memory over HTTP
  (:data:`TILED_SERVER`, :func:`serve_tiled`). tiled pins packages that
  conflict with Crossbar's, so it lives in a venv of its own, made on first
  use (:func:`tiled_python`, default :data:`TILED_VENV`).

Used by ``bench_client.py`` and ``bench_fetch.py``; :func:`cpu_seconds`
is their shared CPU meter.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

#: Where tiled's own venv is made (git-ignored).
TILED_VENV = Path(__file__).resolve().parent / ".venv-tiled"


def tcp_sender(port: int, t_file: str, x_file: str) -> None:
    """Serve the last n samples raw: the client sends n (8 bytes), gets t then x."""
    t, x = np.load(t_file), np.load(x_file)
    with socket.create_server(("127.0.0.1", port)) as srv:
        while True:
            conn, _ = srv.accept()
            with conn:
                head = conn.recv(8)
                if len(head) != 8:
                    continue  # a probe of the port
                (n,) = struct.unpack("<q", head)
                for a in (t[-n:], x[-n:]):
                    conn.sendall(memoryview(np.ascontiguousarray(a)).cast("B"))


def tcp_fetch(port: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Receive the last ``n`` times and values from :func:`tcp_sender`."""
    out = (np.empty(n), np.empty(n))
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(struct.pack("<q", n))
        for a in out:
            view = memoryview(a).cast("B")
            got = 0
            while got < len(view):
                k = s.recv_into(view[got:])
                if k == 0:
                    raise ConnectionError("raw TCP sender closed early")
                got += k
    return out


#: A tiled server of two arrays ``t`` and ``x`` (``.npy`` files), run in tiled's venv.
TILED_SERVER = r"""
import sys
import numpy as np
import uvicorn
from tiled.adapters.array import ArrayAdapter
from tiled.adapters.mapping import MapAdapter
from tiled.config import Authentication
from tiled.server.app import build_app

t, x, port = np.load(sys.argv[1]), np.load(sys.argv[2]), int(sys.argv[3])
tree = MapAdapter({"t": ArrayAdapter.from_array(t), "x": ArrayAdapter.from_array(x)})
app = build_app(tree, authentication=Authentication(single_user_api_key="bench"))
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""


def tiled_python(venv: Path = TILED_VENV) -> Path:
    """Python of a venv holding ``tiled[all]``; made on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} and installing tiled[all] (first run only)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run([str(python), "-c", "import tiled.server, tiled.client, uvicorn"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "tiled[all]"], check=True)
    return python


@contextlib.contextmanager
def serve_tiled(python: Path, files: list[str], tmp: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Run :data:`TILED_SERVER` on ``files`` (t, x); yields ``(port, env)`` for its clients."""
    from sisock.site.ports import free_port, wait_port

    (tmp / "tiled_server.py").write_text(TILED_SERVER)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILED_")}
    with open(tmp / "tiled_server.log", "w") as log:
        server = subprocess.Popen(
            [str(python), str(tmp / "tiled_server.py"), *files, str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            wait_port(port, 120)
            yield port, env
        finally:
            server.terminate()
            server.wait(10)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids``; the children of
    each but this process (the router's Crossbar workers) count too."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            p = psutil.Process(pid)
            for q in [p] if pid == os.getpid() else [p, *p.children(recursive=True)]:
                c = q.cpu_times()
                total += c.user + c.system
        except psutil.NoSuchProcess:
            pass
    return total
