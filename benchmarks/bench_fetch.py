"""Notebook fetch speed at 100 k, 1 M and 10 M samples, beside raw TCP and tiled.

One archive made by ``sisock generate`` (its 100 Hz ``fast`` timeline,
hourly files) is served by ``sisock serve hdf5`` through the router (the
default transport: RawSocket + msgpack on the router's machine).
``sisock.client.connect().get_data("bench", ["az"], ...)`` fetches the
last N samples of ``az`` with their times (16 bytes per sample) into
numpy. Beside it, in the same run and on the same arrays:

* raw TCP: one Python process holds the arrays in memory and ``sendall``\\ s
  them; another ``recv_into`` preallocated arrays (the wire's limit on this
  machine, with nothing between the two ends);
* tiled: ``tiled[all]`` serving the same arrays from memory over HTTP to
  ``tiled.client`` (``.read(slice=...)``). tiled pins packages that conflict
  with crossbar's, so it lives in its own venv, made on first use under
  ``benchmarks/.venv-tiled`` (``--tiled-venv``). If it cannot be installed
  the benchmark says why and prints the other rows.

Each cell is the best of ``--repeat`` fetches after one warm-up (ms and MB
of arrays per second). The CPU lines give the user + system CPU the router
(its worker processes included), the node and the client spent per sisock
fetch (mean over the repeats), which depends much less than the wall time
on how busy the machine is. The load average is printed before and after.

Run: ``.venv/bin/python benchmarks/bench_fetch.py [--samples 100000,1000000,10000000]
[--repeat 7] [--no-tiled]``. It starts its own router, hub and node in a
temporary ``SISOCK_HOME`` and stops them at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchstack import BenchStack
from peers import TILED_VENV, cpu_seconds, serve_tiled, tcp_fetch, tcp_sender, tiled_python

HERE = Path(__file__).resolve()
RATE = 100.0  # Hz of the generated "fast" timeline
NODE = "bench"
FIELD = "az"


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def generate(directory: Path, samples: int, end: float) -> None:
    """``sisock generate`` with a ``fast`` timeline of at least ``samples`` samples."""
    from sisock.cli.generate import generate as make

    hours = samples / RATE / 3600 + 0.5
    make(
        str(directory),
        days=max(hours / 24 + 0.05, 0.5),
        end=end,
        fast_hours=hours,
        fast_rate=RATE,
        burst_rate=0,
        progress=False,
    )


# -- tiled client (run in tiled's venv; the server is peers.TILED_SERVER) ------

TILED_CLIENT = r"""
import json, sys, time
import numpy as np
from tiled.client import from_uri

port, repeat = int(sys.argv[1]), int(sys.argv[2])
sizes = [int(s) for s in sys.argv[3].split(",")]
c = from_uri(f"http://127.0.0.1:{port}", api_key="bench")
total = c["t"].shape[0]
out = {}
for n in sizes:
    sl = np.s_[total - n:total]
    times = []
    for _ in range(repeat + 1):
        t0 = time.perf_counter()
        t = c["t"].read(slice=sl)
        x = c["x"].read(slice=sl)
        times.append(time.perf_counter() - t0)
        assert len(t) == len(x) == n, (len(t), len(x), n)
    out[n] = times[1:]
print(json.dumps(out))
"""


def bench_tiled(venv: Path, files: list[str], sizes: list[int], repeat: int, tmp: Path) -> dict[int, list[float]]:
    """Seconds per fetch of the last n times and values from a tiled server."""
    python = tiled_python(venv)
    (tmp / "tiled_client.py").write_text(TILED_CLIENT)
    with serve_tiled(python, files, tmp) as (port, env):
        out = subprocess.run(
            [str(python), str(tmp / "tiled_client.py"), str(port), str(repeat), ",".join(map(str, sizes))],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    return {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


# -- the run -----------------------------------------------------------------


def best_of(fn, repeat: int, pids: dict[str, int] | None = None) -> tuple[list[float], dict[str, float]]:
    """Wall seconds of ``repeat`` calls of ``fn`` (after one warm-up), and the mean
    CPU seconds one call cost each of ``pids`` (name -> pid; ``client`` is this
    process)."""
    fn()
    pids = {**(pids or {}), "client": os.getpid()}
    times = []
    c0 = {k: cpu_seconds([p]) for k, p in pids.items()}
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times, {k: (cpu_seconds([p]) - c0[k]) / repeat for k, p in pids.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--samples",
        default="100000,1000000,10000000",
        help="comma-separated sample counts (default 100000,1000000,10000000)",
    )
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-tiled", action="store_true", help="skip the tiled peer")
    ap.add_argument("--tiled-venv", type=Path, default=TILED_VENV)
    ap.add_argument("--tcp-sender", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tcp_sender:
        tcp_sender(int(args.tcp_sender[0]), *args.tcp_sender[1:])
        return 0

    from sisock._quiet import silence_bjdata

    silence_bjdata()
    from sisock.archive import ArchiveReader
    from sisock.client import connect
    from sisock.site.ports import free_port, wait_port

    sizes = [int(s) for s in args.samples.split(",")]
    print(f"load average before: {loadavg()}", flush=True)
    rows: dict[str, dict[int, list[float]]] = {}
    cpu: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        end = float(np.floor(time.time()))
        generate(tmp / "archive", max(sizes), end)
        with ArchiveReader(tmp / "archive") as reader:
            span = reader.timelines()["fast"]
            whole = reader.read([FIELD], span["t_first"], span["t_last"] + 1)
        t_all = whole["timeline"]["fast"]["t"]
        files = [str(tmp / "t.npy"), str(tmp / "x.npy")]
        np.save(files[0], t_all)
        np.save(files[1], whole["data"][FIELD])
        del whole
        home = tmp / "home"
        home.mkdir()
        with BenchStack(home) as stack:
            node = stack.spawn(
                "serve",
                "hdf5",
                "--name",
                NODE,
                "--archive",
                str(tmp / "archive"),
                "--max-samples-streamed",
                str(4 * max(sizes)),
                "--log-level",
                "warn",
            )
            stack.wait(lambda c: NODE in {d["name"] for d in c.nodes()}, "archive node")
            router = stack.procs[0].pid
            tcp_port = free_port()
            sender = subprocess.Popen([sys.executable, str(HERE), "--tcp-sender", str(tcp_port), *files])
            try:
                wait_port(tcp_port, 60)
                rows["raw TCP, 2 Python processes"] = {
                    n: best_of(lambda n=n: tcp_fetch(tcp_port, n), args.repeat)[0] for n in sizes
                }
                with connect(timeout=120) as c:
                    label = "sisock client.get_data (router, archive node)"
                    rows[label] = {}
                    for n in sizes:
                        t0 = float(t_all[-n])

                        def fetch(n=n, t0=t0):
                            r = c.get_data(NODE, [FIELD], t0, end + 1, progress=False)
                            assert len(r.data[FIELD]) == n == len(r.timelines["fast"].t), (len(r.data[FIELD]), n)

                        rows[label][n], cpu[n] = best_of(fetch, args.repeat, {"router": router, "node": node.pid})
                        print(f"  sisock {n:>10,}: {min(rows[label][n]) * 1e3:8.1f} ms", flush=True)
            finally:
                sender.terminate()
                sender.wait(10)
        if not args.no_tiled:
            try:
                rows["tiled[all] (HTTP, from memory), tiled.client"] = bench_tiled(
                    args.tiled_venv, files, sizes, args.repeat, tmp
                )
            except (subprocess.CalledProcessError, OSError, TimeoutError) as exc:
                err = getattr(exc, "stderr", "") or ""
                print(f"tiled peer not measured: {exc} {err[-400:]}", file=sys.stderr)

    print(
        f"\nfetch of the last N samples of one float64 field + times (16 bytes/sample) "
        f"into numpy; best of {args.repeat}"
    )
    head = "".join(f" {n:>10,} ms   MB/s" for n in sizes)
    print(f"  {'':48s}{head}")
    for label, by_n in rows.items():
        cells = "".join(f" {min(by_n[n]) * 1e3:13.1f} {16 * n / min(by_n[n]) / 1e6:6.0f}" for n in sizes)
        print(f"  {label:48s}{cells}")
    for who in ("router", "node", "client"):
        print(
            f"  {'sisock CPU ms per fetch, ' + who:48s}" + "".join(f" {cpu[n][who] * 1e3:13.1f} {'':6s}" for n in sizes)
        )
    print(f"load average after: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
