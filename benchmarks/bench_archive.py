"""Benchmark the archive where users feel it, against peers on the same samples.

Builds (once; cached in ``--dir``) one float64 field at 1 Hz for ``--days``
days in hourly files (365 days: 31.5 M samples, 8,760 files), and the same
samples for the peers (cached beside it):

* one flat HDF5 file (``t``, ``x``) read with h5py + numpy;
* DuckDB, a table of the samples, and a 512 s rollup table
  (count/sum/min/max per bucket);
* chDB (embedded ClickHouse), a MergeTree table ordered by ``t``.

Then prints, in the same run, one row per thing a user does, with the best
peer and the ratio sisock / peer (below 1: sisock is faster):

1. restart -> first whole-range answer: start ``sisock serve hdf5`` on the
   archive (a real router and hub run already), wait until the hub lists
   it, then ``connect().get_data(node, ["x"], start, end,
   min_stride=range/2000)`` with a fresh client; peer: a fresh Python
   process opening the DuckDB file and querying the rollup table; also
   the CPU time the node process used until that answer (steadier than
   wall time on a busy machine);
2. ``get_fields`` over the whole range through the client (node warm);
3. reader catalog at start (``ArchiveCore(dir).warm()`` in process);
4. warm whole-range downsample, ``mean`` and ``minmax`` (in process);
5. one day at full resolution (86,400 samples) into numpy (in process).

Also prints the node's resident memory after the queries.  Medians of
``--repeat`` runs (the restart: best of ``--restarts``).  Asserts nothing
about time.  Needs the ``bench`` extra (``pip install -e '.[bench]'``).

Usage::

    python benchmarks/bench_archive.py [--dir DIR] [--days 365]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sisock._quiet import silence_bjdata

silence_bjdata()

from sisock.archive import index as archive_index  # noqa: E402
from sisock.archive.core import ArchiveCore  # noqa: E402
from sisock.core.protocol import FieldSpec  # noqa: E402
from sisock.archive.summary import choose_stride  # noqa: E402
from sisock.archive.writer import ArchiveWriter  # noqa: E402

T0 = 1_700_006_400.0  # a midnight UTC
DAY = 86400
ROLLUP = 512  # seconds per bucket of the DuckDB rollup table


def days_of_samples(days: int):
    """The benchmark's samples, one day at a time (deterministic)."""
    rng = np.random.default_rng(0)
    walk = 0.0
    for d in range(days):
        t = T0 + d * DAY + np.arange(DAY, dtype=np.float64)
        y = walk + np.cumsum(rng.normal(0, 0.01, DAY)) + np.sin(2 * np.pi * t / DAY)
        walk = float(y[-1] - np.sin(2 * np.pi * t[-1] / DAY))
        yield t, y


def build(directory: str, days: int) -> float:
    """Write the archive unless it is already there; return build seconds."""
    marker = os.path.join(directory, f".complete-{days}-3600-None")
    if os.path.exists(marker):
        t0 = time.perf_counter()
        added, dropped = archive_index.sync(directory)  # e.g. built by an older sisock
        if added or dropped:
            print(f"  brought the cached archive's index up to date in {time.perf_counter() - t0:.1f} s")
        return 0.0
    for p in glob.glob(os.path.join(directory, "*.h5")):
        os.remove(p)
    t_start = time.perf_counter()
    with ArchiveWriter(directory, rotate_seconds=3600, flush_interval=1e9) as w:
        w.define_timeline("tl", {"x": FieldSpec("number", "K", "benchmark field")})
        for d, (t, y) in enumerate(days_of_samples(days)):
            w.append("tl", t, {"x": y})
            w.flush()
            if d % 30 == 29:
                print(f"  built {d + 1} days", file=sys.stderr, flush=True)
    open(marker, "w").close()
    return time.perf_counter() - t_start


def build_peers(peer_dir: str, days: int) -> None:
    """Flat HDF5, Parquet, DuckDB (table + rollup) and chDB MergeTree of the same samples."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = os.path.join(peer_dir, ".complete")
    if os.path.exists(marker):
        return
    shutil.rmtree(peer_dir, ignore_errors=True)
    os.makedirs(peer_dir)
    t0 = time.perf_counter()
    n = days * DAY
    parquet = os.path.join(peer_dir, "samples.parquet")
    with h5py.File(os.path.join(peer_dir, "flat.h5"), "w") as f:
        ft = f.create_dataset("t", (n,), "f8", chunks=(DAY,))
        fx = f.create_dataset("x", (n,), "f8", chunks=(DAY,))
        schema = pa.schema([("t", pa.float64()), ("x", pa.float64())])
        with pq.ParquetWriter(parquet, schema) as pw:
            for d, (t, y) in enumerate(days_of_samples(days)):
                ft[d * DAY : (d + 1) * DAY] = t
                fx[d * DAY : (d + 1) * DAY] = y
                pw.write_table(pa.table({"t": t, "x": y}, schema=schema))
    con = duckdb.connect(os.path.join(peer_dir, "bench.duckdb"))
    con.execute(f"CREATE TABLE samples AS SELECT * FROM read_parquet('{parquet}') ORDER BY t")
    con.execute(f"""CREATE TABLE rollup AS SELECT CAST(floor(t / {ROLLUP}) AS BIGINT) AS k,
                    count(x) AS n, sum(x) AS s, min(x) AS lo, max(x) AS hi
                    FROM samples GROUP BY k ORDER BY k""")
    con.close()
    from chdb import session

    s = session.Session(os.path.join(peer_dir, "chdb"))
    s.query("CREATE TABLE samples (t Float64, x Float64) ENGINE = MergeTree ORDER BY t")
    s.query(f"INSERT INTO samples SELECT * FROM file('{parquet}', Parquet)")
    s.query("OPTIMIZE TABLE samples FINAL")
    s.close()
    open(marker, "w").close()
    print(f"  built the peers' copies in {time.perf_counter() - t0:.0f} s")


# --------------------------------------------------------------------- peers


class Peers:
    """The same queries answered by the peers."""

    def __init__(self, peer_dir: str) -> None:
        import duckdb
        from chdb import session

        self.flat = h5py.File(os.path.join(peer_dir, "flat.h5"), "r")
        self.duck = duckdb.connect(os.path.join(peer_dir, "bench.duckdb"), read_only=True)
        self.ch = session.Session(os.path.join(peer_dir, "chdb"))

    def flat_downsample(self, start, end, stride, method):
        """Read the range from the flat file, bin with numpy (floor + reduceat)."""
        i0, i1 = self._flat_index(start), self._flat_index(end)
        t, y = self.flat["t"][i0:i1], self.flat["x"][i0:i1]
        k = np.floor(t / stride).astype(np.int64)
        starts = np.concatenate(([0], np.flatnonzero(np.diff(k)) + 1))
        if method == "mean":
            return (k[starts] + 0.5) * stride, np.add.reduceat(y, starts) / np.diff(np.append(starts, y.size))
        return k[starts], np.fmin.reduceat(y, starts), np.fmax.reduceat(y, starts)

    def flat_raw(self, start, end):
        i0, i1 = self._flat_index(start), self._flat_index(end)
        return self.flat["t"][i0:i1], self.flat["x"][i0:i1]

    def _flat_index(self, x: float) -> int:
        """Samples with t < x (binary search on the dataset, ~25 small reads)."""
        ds = self.flat["t"]
        lo, hi = 0, ds.shape[0]
        while lo < hi:
            mid = (lo + hi) // 2
            if ds[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def duck_table(self, start, end, stride, method):
        agg = "avg(x)" if method == "mean" else "min(x), max(x)"
        return self.duck.execute(
            f"SELECT floor(t / {stride}) AS k, {agg} FROM samples WHERE t >= {start} AND t < {end} "
            "GROUP BY k ORDER BY k"
        ).fetchnumpy()

    def duck_rollup(self, start, end, stride, method):
        agg = "sum(s) / sum(n)" if method == "mean" else "min(lo), max(hi)"
        factor = stride / ROLLUP
        return self.duck.execute(
            f"SELECT floor(k / {factor}) AS kk, {agg} FROM rollup "
            f"WHERE k >= {int(np.ceil(start / ROLLUP))} AND k < {int(np.floor(end / ROLLUP))} "
            "GROUP BY kk ORDER BY kk"
        ).fetchnumpy()

    def chdb_table(self, start, end, stride, method):
        agg = "avg(x)" if method == "mean" else "min(x), max(x)"
        return self.ch.query(
            f"SELECT floor(t / {stride}) AS k, {agg} FROM samples WHERE t >= {start} AND t < {end} "
            "GROUP BY k ORDER BY k",
            "ArrowTable",
        )

    def duck_raw(self, start, end):
        r = self.duck.execute(f"SELECT t, x FROM samples WHERE t >= {start} AND t < {end} ORDER BY t").fetchnumpy()
        return np.asarray(r["t"]), np.asarray(r["x"])

    def chdb_raw(self, start, end):
        r = self.ch.query(f"SELECT t, x FROM samples WHERE t >= {start} AND t < {end} ORDER BY t", "ArrowTable")
        return r.column("t").to_numpy(), r.column("x").to_numpy()

    def close(self):
        self.flat.close()
        self.duck.close()
        self.ch.close()


DUCK_COLD = """
import sys, time
t0 = time.perf_counter()
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
r = con.execute(sys.argv[2]).fetchnumpy()
assert len(r["kk"]) > 100
print(time.perf_counter() - t0)
"""


# --------------------------------------------------------------------- helpers


def median_time(fn, repeat: int) -> float:
    """Median wall time of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not open after {timeout} s")


def fmt(seconds: float) -> str:
    """Seconds, readably."""
    if seconds >= 1:
        return f"{seconds:8.2f} s "
    return f"{seconds * 1e3:8.2f} ms"


def row(label: str, ours: float, peer_label: str, peer: float | None) -> None:
    """One line of the table: ours, the peer and the ratio."""
    if peer is None:
        print(f"  {label:40s} {fmt(ours)}   {peer_label}")
    else:
        ratio = ours / peer
        shown = f"{ratio:6.2f}" if ratio >= 0.1 else f"1/{1 / ratio:.0f}"
        print(f"  {label:40s} {fmt(ours)}   {peer_label:34s} {fmt(peer)}   ratio {shown}")


# --------------------------------------------------------------------- through the router


class Stack:
    """A router and a hub in a temporary SISOCK_HOME (stopped by :meth:`close`)."""

    def __init__(self) -> None:
        self.home = tempfile.mkdtemp(prefix="sisock-bench-")
        port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SISOCK_", "WAMP_"))}
        self.env.update(SISOCK_HOME=self.home, SISOCK_ROUTER_URL=f"ws://127.0.0.1:{port}/ws")
        os.environ.update(SISOCK_HOME=self.home, SISOCK_ROUTER_URL=self.env["SISOCK_ROUTER_URL"])
        self.procs: list[subprocess.Popen] = []
        self.spawn("router", "--loglevel", "warn")
        wait_port(port)
        self.spawn("hub")

    def spawn(self, *argv: str) -> subprocess.Popen:
        p = subprocess.Popen(
            [sys.executable, "-m", "sisock", *argv],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        self.procs.remove(p)

    def close(self) -> None:
        for p in reversed(list(self.procs)):
            self.stop(p)
        shutil.rmtree(self.home, ignore_errors=True)


def listed(client, name: str) -> bool:
    from sisock.client import ClientError

    try:
        return name in {n["name"] for n in client.nodes()}
    except ClientError:
        return False  # hub still starting


def restart_to_first_answer(
    stack: Stack, directory: str, start: float, end: float, stride: float
) -> tuple[float, subprocess.Popen, int, float]:
    """Seconds from starting a node process to its first whole-range answer via a fresh client,
    the process, the samples returned and the CPU seconds the node used until then."""
    from sisock.client import connect

    with connect(timeout=120) as watcher:
        while not _hub_up(watcher):
            time.sleep(0.1)
        t0 = time.perf_counter()
        p = stack.spawn("serve", "hdf5", "--name", "bench", "--archive", directory)
        while not listed(watcher, "bench"):
            if p.poll() is not None:
                raise RuntimeError("the archive node exited")
            time.sleep(0.02)
    with connect(timeout=300) as c:
        r = c.get_data("bench", ["x"], start, end, min_stride=stride)
    elapsed = time.perf_counter() - t0
    import psutil

    times = psutil.Process(p.pid).cpu_times()
    return elapsed, p, len(r.data["x"]), times.user + times.system


def start_conditions(directory: str) -> str:
    """What a node start found: the index digest, and sisock's compiled bytecode."""
    import importlib.util

    import sisock
    from sisock.archive import digest

    parts = [
        "index digest present" if os.path.exists(digest.digest_path(directory)) else "no index digest (first start)"
    ]
    source = os.path.join(os.path.dirname(sisock.__file__), "archive", "reader.py")
    if not os.path.exists(importlib.util.cache_from_source(source)):
        parts.append("sisock has no compiled bytecode: each start compiled it (run `make bytecode`)")
    return "; ".join(parts)


def _hub_up(client) -> bool:
    from sisock.client import ClientError

    try:
        client.nodes()
        return True
    except ClientError:
        return False


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


# --------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "sisock-bench-archive"))
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--repeat", type=int, default=15, help="repetitions of in-process queries")
    ap.add_argument("--repeat-slow", type=int, default=3, help="repetitions of full scans")
    ap.add_argument("--restarts", type=int, default=2, help="node restarts timed (best is shown)")
    ap.add_argument("--no-router", action="store_true", help="skip the rows through the router")
    ap.add_argument(
        "--no-peers",
        action="store_true",
        help="measure sisock only (e.g. for --days 3650, whose peer copies are large)",
    )
    args = ap.parse_args(argv)
    directory = os.path.join(args.dir, f"{args.days}d-3600s-none")
    peer_dir = os.path.join(args.dir, f"{args.days}d-peers")
    os.makedirs(directory, exist_ok=True)
    print(f"archive: {directory}")
    built = build(directory, args.days)
    files = glob.glob(os.path.join(directory, "*.h5"))
    size = sum(os.path.getsize(p) for p in files)
    index_size = os.path.getsize(archive_index.index_path(directory))
    n = args.days * DAY
    print(
        f"  {n:,} samples, {len(files):,} files, {size / 2**20:.1f} MiB ({size / n:.2f} bytes/sample), "
        f"index {index_size / 2**20:.1f} MiB" + (f", built in {built:.1f} s" if built else " (cached)")
    )
    if not args.no_peers:
        build_peers(peer_dir, args.days)
    start, end = T0, T0 + n
    min_stride = (end - start) / 2000
    stride = choose_stride(min_stride)[0]  # the peers bin with the stride the archive uses
    print(
        f"  whole range: {args.days} days, min_stride = range/2000 = {min_stride:.0f} s "
        f"(binned at {stride:.0f} s, a multiple of the {ROLLUP} s rollup)"
    )
    peers = None if args.no_peers else Peers(peer_dir)
    print("\nwhat a user does                           sisock        best peer, same samples")

    # 1-2: through a real router
    node_rss = None
    if not args.no_router:
        stack = Stack()
        try:
            best, proc, npts, cpus = None, None, 0, []
            for _ in range(args.restarts):
                if proc is not None:
                    stack.stop(proc)
                elapsed, proc, npts, cpu = restart_to_first_answer(stack, directory, start, end, min_stride)
                best = elapsed if best is None else min(best, elapsed)
                cpus.append(cpu)
            cold = None
            if peers is not None:
                duck_sql = (
                    f"SELECT floor(k / {stride / ROLLUP}) AS kk, sum(s) / sum(n) FROM rollup "
                    f"WHERE k >= {int(start // ROLLUP)} AND k < {int(end // ROLLUP)} "
                    "GROUP BY kk ORDER BY kk"
                )
                cold = min(
                    float(
                        subprocess.run(
                            [sys.executable, "-c", DUCK_COLD, os.path.join(peer_dir, "bench.duckdb"), duck_sql],
                            capture_output=True,
                            text=True,
                            check=True,
                        ).stdout
                    )
                    for _ in range(3)
                )
            row(f"restart -> first answer ({npts} pts)", best, "DuckDB + rollup, cold process", cold)
            print(
                f"    (node CPU until that answer: best {min(cpus) * 1e3:.0f} ms, median "
                f"{statistics.median(cpus) * 1e3:.0f} ms of {len(cpus)} starts; wall time "
                "follows the machine's load)"
            )
            print(f"    ({start_conditions(directory)})")
            from sisock.client import connect

            with connect(timeout=300) as c:
                fields = median_time(lambda: c.fields("bench", start, end), args.repeat)
                row("get_fields over the whole range", fields, "(no peer)", None)
                for method in ("mean", "minmax"):  # load the node as a dashboard would
                    for _ in range(3):
                        c.get_data("bench", ["x"], start, end, min_stride=min_stride, method=method)
                d0 = T0 + (args.days // 2) * DAY + 3600.5
                for _ in range(3):
                    c.get_data("bench", ["x"], d0, d0 + DAY)
                node_rss = rss_mb(proc.pid)
        finally:
            stack.close()

    # 3: catalog at start
    t0, cpu0 = time.perf_counter(), time.process_time()
    node = ArchiveCore(directory)  # what a node does at start
    node.warm()
    reader = node.reader
    catalog, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    row(f"reader catalog at start ({len(files)} files)", catalog, "DuckDB/chDB keep metadata", None)
    print(
        f"    ({cpu:.2f} s of CPU; {reader.files.from_index} files from the index, "
        f"{reader.files.read_directly} read directly, {reader.file_opens} HDF5 opens)"
    )

    # 4: warm whole-range downsample
    print(
        f"\nwarm whole-range downsample ({args.days} days, median of {args.repeat}; "
        f"full scans median of {args.repeat_slow})"
    )
    for method in ("mean", "minmax"):
        out = reader.read(["x"], start, end, min_stride=min_stride, method=method)
        npts = out["data"]["x"].size
        ours = median_time(lambda: reader.read(["x"], start, end, min_stride=min_stride, method=method), args.repeat)
        if peers is None:
            row(f"{method} ({npts} points)", ours, "(peers not measured)", None)
            continue
        rollup = median_time(lambda: peers.duck_rollup(start, end, stride, method), args.repeat)
        table = median_time(lambda: peers.duck_table(start, end, stride, method), args.repeat_slow)
        ch = median_time(lambda: peers.chdb_table(start, end, stride, method), args.repeat_slow)
        flat = median_time(lambda: peers.flat_downsample(start, end, stride, method), args.repeat_slow)
        row(f"{method} ({npts} points)", ours, f"DuckDB + {ROLLUP} s rollup", rollup)
        row("", ours, "DuckDB table GROUP BY", table)
        row("", ours, "chDB MergeTree GROUP BY", ch)
        row("", ours, "one flat HDF5 file + numpy", flat)
    try:
        if peers is None:
            raise ImportError
        from tsdownsample import M4Downsampler

        def m4_flat():
            t, y = peers.flat_raw(start, end)
            return M4Downsampler().downsample(t, y, n_out=4000)

        m4 = median_time(m4_flat, args.repeat_slow)
        print(f"  {'':40s} {'':11s}   {'flat HDF5 + tsdownsample M4':34s} {fmt(m4)}")
    except ImportError:
        pass

    # 5: one day at full resolution
    d0 = T0 + (args.days // 2) * DAY + 3600.5
    out = reader.read(["x"], d0, d0 + DAY)
    ours = median_time(lambda: reader.read(["x"], d0, d0 + DAY), args.repeat)
    print(f"\none day at full resolution ({out['data']['x'].size:,} samples, median of {args.repeat})")
    if peers is None:
        row("1 day, values + times", ours, "(peers not measured)", None)
    else:
        ref_t, _ = peers.duck_raw(d0, d0 + DAY)
        assert np.array_equal(out["timeline"]["tl"]["t"], ref_t)
        row(
            "1 day, values + times",
            ours,
            "chDB MergeTree",
            median_time(lambda: peers.chdb_raw(d0, d0 + DAY), args.repeat),
        )
        row("", ours, "DuckDB table", median_time(lambda: peers.duck_raw(d0, d0 + DAY), args.repeat))
        row("", ours, "one flat HDF5 file", median_time(lambda: peers.flat_raw(d0, d0 + DAY), args.repeat))
    if node_rss is not None:
        print(f"\nnode resident memory after the queries: {node_rss:.0f} MiB")
    import resource

    print(
        f"this process (reader + peers) peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    if peers is not None:
        peers.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
