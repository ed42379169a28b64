"""End-to-end fetch speed: archive node -> Crossbar router -> client -> numpy.

Fetches ``--samples`` (default 10 M) float64 values plus their float64
times at full resolution through the real router, and prints, side by
side and in the same run:

* sisock, for every combination of
  - the node's transport to the router: WebSocket (``ws://``) or
    RawSocket (``rs://``; the default for nodes and clients on the
    router's machine, marked "default" with msgpack and 256 KiB parts),
  - the size of the streamed parts (``--parts``, bytes),
  - the client's transport (WebSocket or RawSocket) and serializer
    (msgpack or cbor);
* the sisock 0.x path (JSON serializer, values as lists) on
  ``--json-samples`` (default 1 M) samples of the same archive;
* a raw loopback TCP socket between two Python processes (the sender holds
  the arrays in memory, the receiver ``recv_into`` a preallocated array):
  the wire's limit on this machine;
* tiled (``tiled[all]``) serving the same arrays from memory over HTTP to
  ``tiled.client`` (``.read()``), installed on first use in its own venv
  (``--tiled-venv``, default ``benchmarks/.venv-tiled``): tiled
  pins packages that conflict with crossbar's.

Each row is the best (and median) of ``--repeat`` fetches; MB/s counts the
array payload (16 bytes per sample). The CPU column sums the user and
system CPU one fetch cost every process involved (router, node, client),
which depends much less than the wall time on how busy the machine is.
The machine may be busy: run the benchmark at least twice and keep the
best figures.

Run: ``.venv/bin/python benchmarks/bench_client.py [--samples N] [--repeat R]
[--parts 262144,1048576] [--no-tiled]``. It starts its own router, hub and
archive nodes on free ports in a temporary SISOCK_HOME and stops them at
the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sisock.site.ports import free_port, wait_port

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import TILED_VENV, cpu_seconds, serve_tiled, tcp_fetch, tcp_sender, tiled_python  # noqa: E402 - after sys.path

HERE = Path(__file__).resolve()
RATE = 100.0  # samples per second in the benchmark archive


def make_arrays(n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The benchmark's times and values (deterministic)."""
    start = float(np.floor(time.time() - n / RATE - 60))
    t = start + np.arange(n) / RATE
    x = np.random.default_rng(0).normal(size=n)
    return t, x, start


def write_archive(d: Path, t: np.ndarray, x: np.ndarray) -> None:
    """One timeline ``tl`` with one field ``x`` in one file."""
    from sisock.core.protocol import FieldSpec
    from sisock.archive.writer import ArchiveWriter

    with ArchiveWriter(d, rotate_seconds=1e9, rotate_bytes=2**40) as w:
        w.define_timeline("tl", {"x": FieldSpec("number")})
        w.append("tl", t, {"x": x})


# -- child roles ------------------------------------------------------------


def serve_node(archive: Path, name: str, part_bytes: int, max_samples: int) -> None:
    """Run one archive node whose streamed parts are ``part_bytes`` long."""
    from sisock.wamp.service import NodeService, run_nodes
    from sisock.servers.hdf5_archive import ArchiveCore
    from sisock.site.settings import load_settings

    core = ArchiveCore(archive, name, f"benchmark node {name}", max_samples, 4 * max_samples)
    service = NodeService(core, load_settings("server"))
    service.chunk_bytes = part_bytes
    run_nodes([service], "warn")


# -- tiled client (run in tiled's venv; the server is peers.TILED_SERVER) -----

TILED_CLIENT = r"""
import json, sys, time
from tiled.client import from_uri

port, n, repeat = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = from_uri(f"http://127.0.0.1:{port}", api_key="bench")
times = []
for _ in range(repeat):
    t0 = time.perf_counter()
    t = c["t"].read()
    x = c["x"].read()
    times.append(time.perf_counter() - t0)
    assert len(t) == len(x) == n, (len(t), len(x))
print(json.dumps({"times": times, "t0": float(t[0]), "x0": float(x[0])}))
"""


def bench_tiled(venv: Path, files: list[str], n: int, repeat: int, tmp: Path) -> list[float]:
    """Seconds per fetch of both arrays from a tiled server, in tiled's venv."""
    python = tiled_python(venv)
    (tmp / "tiled_client.py").write_text(TILED_CLIENT)
    with serve_tiled(python, files, tmp) as (port, env):
        out = subprocess.run(
            [str(python), str(tmp / "tiled_client.py"), str(port), str(n), str(repeat)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])["times"]


# -- the run ----------------------------------------------------------------

CPU: dict[str, float] = {}  # row label -> least CPU seconds of one fetch, all processes


def timed(fn, repeat: int, label: str | None = None, pids: list[int] = ()) -> list[float]:
    """Seconds taken by each of ``repeat`` calls of ``fn``; with ``label``,
    also record in :data:`CPU` the least CPU one call cost ``pids`` (and
    this process). The wall time depends on how busy the machine is; the
    CPU time much less."""
    times, cpus = [], []
    pids = [os.getpid(), *pids]
    for _ in range(repeat):
        c0 = cpu_seconds(pids)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds(pids) - c0)
    if label is not None:
        CPU[label] = min(cpus)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--json-samples", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--parts",
        default="262144,1048576",  # CHUNK_BYTES and the old default
        help="comma-separated part sizes in bytes (default 262144,1048576)",
    )
    ap.add_argument("--no-tiled", action="store_true", help="skip the tiled peer")
    ap.add_argument(
        "--tiled-venv",
        type=Path,
        default=TILED_VENV,
    )
    ap.add_argument("--serve-node", nargs=4, metavar=("ARCHIVE", "NAME", "PART", "MAX"), help=argparse.SUPPRESS)
    ap.add_argument("--tcp-sender", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_node:
        a, name, part, mx = args.serve_node
        serve_node(Path(a), name, int(part), int(mx))
        return 0
    if args.tcp_sender:
        tcp_sender(int(args.tcp_sender[0]), *args.tcp_sender[1:])
        return 0

    from sisock._quiet import silence_bjdata

    silence_bjdata()
    from sisock.client import ClientError, connect
    from sisock.core.wire import CHUNK_BYTES

    n = args.samples
    payload = 16 * n
    parts = [int(p) for p in args.parts.split(",")]
    rows: list[tuple[str, list[float], int]] = []  # label, seconds, payload bytes

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        t, x, start = make_arrays(n)
        end = start + n / RATE + 1
        write_archive(tmp / "archive", t, x)
        files = [str(tmp / "t.npy"), str(tmp / "x.npy")]
        np.save(files[0], t)
        np.save(files[1], x)
        del t, x

        port = free_port()
        ws_url, rs_url = f"ws://127.0.0.1:{port}/ws", f"rs://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SISOCK_", "WAMP_"))}
        # every program's transport is chosen by its URL here, not by default
        env.update(SISOCK_HOME=str(tmp / "home"), SISOCK_ROUTER_URL=ws_url, SISOCK_ROUTER_RAWSOCKET="no")
        os.environ.update(SISOCK_HOME=env["SISOCK_HOME"], SISOCK_ROUTER_URL=ws_url, SISOCK_ROUTER_RAWSOCKET="no")
        procs: list[subprocess.Popen] = []

        def spawn(argv, extra_env=None) -> int:
            procs.append(
                subprocess.Popen(
                    argv, env={**env, **(extra_env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
            return procs[-1].pid

        try:
            router = spawn([sys.executable, "-m", "sisock", "router", "--loglevel", "warn"])
            wait_port(port)
            spawn([sys.executable, "-m", "sisock", "hub"])
            nodes = []
            for node_url, kind in ((ws_url, "ws"), (rs_url, "rs")):
                for part in parts:
                    name = f"{kind}_{part // 1024}k"
                    pid = spawn(
                        [sys.executable, str(HERE), "--serve-node", str(tmp / "archive"), name, str(part), str(n)],
                        {"SISOCK_ROUTER_URL": node_url},
                    )
                    nodes.append((name, kind, part, pid))
            tcp_port = free_port()
            sender = spawn([sys.executable, str(HERE), "--tcp-sender", str(tcp_port), *files])

            with connect(timeout=60) as c:
                deadline = time.monotonic() + 60
                want = {name for name, _, _, _ in nodes}
                while True:
                    try:
                        if want <= {d["name"] for d in c.nodes()}:
                            break
                    except ClientError:
                        pass  # hub still starting
                    if time.monotonic() > deadline:
                        raise TimeoutError("archive nodes not listed")
                    time.sleep(0.2)

            # raw loopback TCP: the wire's limit
            wait_port(tcp_port)
            label = "raw loopback TCP, 2 Python processes"
            rows.append((label, timed(lambda: tcp_fetch(tcp_port, n), args.repeat, label, [sender]), payload))

            # sisock, every combination
            for client_kind, url in (("ws", ws_url), ("rs", rs_url)):
                for ser in ("msgpack", "cbor"):
                    with connect(url, timeout=120, serializer=ser) as c:
                        for name, kind, part, pid in nodes:

                            def fetch(c=c, name=name):
                                r = c.get_data(name, ["x"], start, end, progress=False)
                                assert len(r.data["x"]) == n == len(r.timelines["tl"].t)

                            fetch()  # warm the page cache and the field cache
                            default = kind == client_kind == "rs" and ser == "msgpack" and part == CHUNK_BYTES
                            label = (
                                f"sisock node {kind} -> client {client_kind} {ser:7s} "
                                f"parts {part // 1024:4d} KiB" + (" (default)" if default else "")
                            )
                            rows.append((label, timed(fetch, args.repeat, label, [router, pid]), payload))
                            print(f"  {label}  {payload / min(rows[-1][1]) / 1e6:6.0f} MB/s", flush=True)

            # sisock 0.x: JSON lists, fewer samples
            nj = min(args.json_samples, n)
            with connect(ws_url, serializer="json", binary=False, timeout=300) as c:

                def fetch_json():
                    r = c.get_data(nodes[0][0], ["x"], start, start + nj / RATE - 0.5 / RATE)
                    assert len(r.data["x"]) == nj, len(r.data["x"])

                rows.append(
                    (
                        f"sisock 0.x style: JSON lists ({nj:,} samples)",
                        timed(fetch_json, max(1, min(args.repeat, 2))),
                        16 * nj,
                    )
                )
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()

        if not args.no_tiled:
            try:
                rows.append(
                    (
                        "tiled[all] (HTTP, from memory) -> tiled.client .read()",
                        bench_tiled(args.tiled_venv, files, n, args.repeat, tmp),
                        payload,
                    )
                )
            except (subprocess.CalledProcessError, OSError, TimeoutError) as exc:
                print(f"tiled peer failed: {exc}", file=sys.stderr)

    best = {label: nbytes / min(ts) / 1e6 for label, ts, nbytes in rows}
    tiled = next((v for k, v in best.items() if k.startswith("tiled")), None)
    tcp = best[rows[0][0]]
    print(
        f"\nfetch of {n:,} float64 samples + times ({payload / 1e6:.0f} MB of arrays) "
        f"into numpy; best and median of {args.repeat}:"
    )
    print(f"  {'':66s} {'best ms':>8s} {'median':>8s} {'MB/s':>7s} {'x tiled':>8s} {'of TCP':>7s} {'CPU ms':>7s}")
    for label, ts, nbytes in rows:
        mbs = best[label]
        vs_tiled = f"{mbs / tiled:7.2f}x" if tiled else "    n/a"
        cpu = f"{CPU[label] * 1e3:7.0f}" if label in CPU else "      -"
        print(
            f"  {label:66s} {min(ts) * 1e3:8.1f} {statistics.median(ts) * 1e3:8.1f} "
            f"{mbs:7.0f} {vs_tiled:>8s} {mbs / tcp:6.0%} {cpu}"
        )
    print(
        "  CPU ms: least user+system CPU of one fetch, summed over the processes "
        "involved (sisock: router, node, client; TCP: both ends)"
    )
    sisock = {k: v for k, v in best.items() if k.startswith("sisock node")}
    top = max(sisock, key=sisock.get)
    json_row = next(k for k in best if k.startswith("sisock 0.x"))
    print(
        f"\nbest sisock: {top.strip()}: {sisock[top]:.0f} MB/s"
        + (f" = {sisock[top] / tiled:.1f}x tiled" if tiled else "")
        + f", {sisock[top] / best[json_row]:.0f}x the 0.x JSON path, "
        f"{sisock[top] / tcp:.0%} of raw TCP   (target: >= 500 MB/s and >= 3x tiled)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
