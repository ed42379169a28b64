"""Benchmark the archive's downsampled reads against naive baselines.

Builds (once; cached in ``--dir``) one field at 1 Hz for 365 days (31.5 M
samples), then times, in the same run:

(a) ``ArchiveReader.read`` of the whole range with ``min_stride = range/2000``
    (warm reader; the first, cold query is printed separately);
(b) naive: read every sample with h5py and bin with numpy;
(c) read every sample with h5py + tsdownsample M4 to the same number of points;

for ``mean`` and ``minmax``, and prints medians and the ratios a/b and a/c.
Also prints a 1-day query at full resolution and the bytes per sample.
Asserts nothing about time.

Usage::

    python benchmarks/bench_archive.py [--dir DIR] [--days 365] [--rotate-seconds 3600]
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sisock.archive.reader import ArchiveReader  # noqa: E402
from sisock.archive.spec import FieldSpec  # noqa: E402
from sisock.archive.writer import ArchiveWriter  # noqa: E402

T0 = 1_700_006_400.0  # a midnight UTC
DAY = 86400


def build(directory: str, days: int, rotate: float, compression: str | None) -> float:
    """Write the benchmark archive unless it is already there; return build seconds."""
    marker = os.path.join(directory, f".complete-{days}-{int(rotate)}-{compression}")
    if os.path.exists(marker):
        return 0.0
    for p in glob.glob(os.path.join(directory, "*.h5")):
        os.remove(p)
    t_start = time.perf_counter()
    rng = np.random.default_rng(0)
    with ArchiveWriter(directory, rotate_seconds=rotate, flush_interval=1e9, compression=compression) as w:
        w.define_timeline("tl", {"x": FieldSpec("number", "K", "benchmark field")})
        walk = 0.0
        for d in range(days):
            t = T0 + d * DAY + np.arange(DAY, dtype=np.float64)
            y = walk + np.cumsum(rng.normal(0, 0.01, DAY)) + np.sin(2 * np.pi * t / DAY)
            walk = float(y[-1] - np.sin(2 * np.pi * t[-1] / DAY))
            w.append("tl", t, {"x": y})
            w.flush()
            if d % 30 == 29:
                print(f"  built {d + 1} days", file=sys.stderr, flush=True)
    open(marker, "w").close()
    return time.perf_counter() - t_start


def read_all(directory: str, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Naive read: every file, every sample, with h5py; then cut to [start, end)."""
    ts, ys = [], []
    for p in sorted(glob.glob(os.path.join(directory, "*.h5"))):
        with h5py.File(p, "r", libver="latest", swmr=True) as f:
            ts.append(f["tl/t"][()])
            ys.append(f["tl/f/x"][()])
    t, y = np.concatenate(ts), np.concatenate(ys)
    sel = (t >= start) & (t < end)
    return t[sel], y[sel]


def naive(directory: str, start: float, end: float, stride: float, method: str):
    """(b) Read everything, bin with numpy (floor + reduceat)."""
    t, y = read_all(directory, start, end)
    k = np.floor(t / stride).astype(np.int64)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(k)) + 1))
    if method == "mean":
        return (k[starts] + 0.5) * stride, np.add.reduceat(y, starts) / np.diff(np.append(starts, y.size))
    return k[starts], np.fmin.reduceat(y, starts), np.fmax.reduceat(y, starts)


def tsds(directory: str, start: float, end: float, n_out: int):
    """(c) Read everything, M4 with tsdownsample."""
    from tsdownsample import M4Downsampler

    t, y = read_all(directory, start, end)
    idx = M4Downsampler().downsample(t, y, n_out=n_out)
    return t[idx], y[idx]


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "sisock-bench-archive"))
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--rotate-seconds", type=float, default=3600.0)
    ap.add_argument("--compression", choices=("none", "lz4"), default="none")
    ap.add_argument("--repeat", type=int, default=15, help="repetitions of (a)")
    ap.add_argument("--repeat-naive", type=int, default=3, help="repetitions of (b) and (c)")
    args = ap.parse_args(argv)
    comp = None if args.compression == "none" else args.compression
    directory = os.path.join(args.dir, f"{args.days}d-{int(args.rotate_seconds)}s-{args.compression}")
    os.makedirs(directory, exist_ok=True)
    print(f"archive: {directory}")
    built = build(directory, args.days, args.rotate_seconds, comp)
    files = glob.glob(os.path.join(directory, "*.h5"))
    size = sum(os.path.getsize(p) for p in files)
    n = args.days * DAY
    print(f"  {n} samples, {len(files)} files, {size / 2**20:.1f} MiB, {size / n:.2f} bytes/sample"
          + (f", built in {built:.1f} s" if built else " (cached)"))

    start, end = T0, T0 + n
    stride = (end - start) / 2000
    reader = ArchiveReader(directory)
    t0 = time.perf_counter()
    reader.read(["x"], start, end, min_stride=stride, method="mean")
    cold = time.perf_counter() - t0
    print(f"  cold first query (opens every file once, builds caches): {cold * 1e3:.0f} ms")
    print(f"\nwhole range ({args.days} days), min_stride = range/2000 = {stride:.1f} s")
    for method in ("mean", "minmax"):
        out = reader.read(["x"], start, end, min_stride=stride, method=method)
        npts = out["data"]["x"].size
        a = median_time(lambda: reader.read(["x"], start, end, min_stride=stride, method=method), args.repeat)
        b = median_time(lambda: naive(directory, start, end, stride, method), args.repeat_naive)
        c = median_time(lambda: tsds(directory, start, end, 4000), args.repeat_naive)
        print(f"  {method:6s}: {npts} points  (a) reader {a * 1e3:8.2f} ms   (b) naive h5py+numpy "
              f"{b * 1e3:8.1f} ms   (c) h5py+tsdownsample M4 {c * 1e3:8.1f} ms   "
              f"a/b = 1/{b / a:.0f}   a/c = 1/{c / a:.0f}")

    d0 = T0 + (args.days // 2) * DAY + 3600.5
    out = reader.read(["x"], d0, d0 + DAY)
    full = median_time(lambda: reader.read(["x"], d0, d0 + DAY), args.repeat)
    print(f"\n1-day query at full resolution: {out['data']['x'].size} samples in {full * 1e3:.2f} ms "
          f"(median of {args.repeat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
