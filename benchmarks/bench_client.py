"""End-to-end fetch speed: client -> router -> archive node -> client.

Fetches 1 M float64 samples (plus their float64 times) at full resolution,
in the same run, three ways:

(a) sisock 0.x style: JSON serializer, values as lists;
(b) msgpack + binary arrays, one message;
(c) msgpack + binary arrays + streaming (progressive results).

Prints the median of several fetches, MB/s (of array payload) and ratios.
Target: (c) >= 25x faster than (a) and >= 150 MB/s.

Run: ``.venv/bin/python benchmarks/bench_client.py [--samples N] [--repeat R]``.
It starts its own router, hub and archive node on free ports in a
temporary SISOCK_HOME and stops them at the end.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sisock._quiet import silence_bjdata

silence_bjdata()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


def write_archive(d: Path, n: int) -> float:
    from sisock.protocol import FieldSpec
    from sisock.archive.writer import ArchiveWriter

    start = float(np.floor(time.time() - n / 100.0 - 60))
    t = start + np.arange(n) / 100.0
    x = np.random.default_rng(0).normal(size=n)
    with ArchiveWriter(d, rotate_seconds=1e9, rotate_bytes=2**40) as w:
        w.define_timeline("tl", {"x": FieldSpec("number")})
        w.append("tl", t, {"x": x})
    return start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from sisock.client import connect

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SISOCK_", "WAMP_"))}
        env.update(SISOCK_HOME=str(home), SISOCK_ROUTER_URL=f"ws://127.0.0.1:{port}/ws")
        os.environ.update(SISOCK_HOME=env["SISOCK_HOME"],
                          SISOCK_ROUTER_URL=env["SISOCK_ROUTER_URL"])
        start = write_archive(home / "archive", args.samples)
        end = start + args.samples / 100.0 + 1
        procs = []

        def spawn(*argv):
            procs.append(subprocess.Popen([sys.executable, "-m", "sisock", *argv], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            spawn("router", "--loglevel", "warn")
            wait_port(port)
            spawn("hub")
            spawn("serve", "hdf5", "--name", "bench", "--archive", str(home / "archive"),
                  "--max-samples", str(4 * args.samples))
            from sisock.client import ClientError

            with connect(timeout=60) as c:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if "bench" in {n["name"] for n in c.nodes()}:
                            break
                    except ClientError:
                        pass  # hub still starting
                    if time.monotonic() > deadline:
                        raise TimeoutError("archive node not listed")
                    time.sleep(0.1)
            payload = 16 * args.samples  # float64 values + float64 times

            def timed(fn) -> tuple[float, int]:
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    n = fn()
                    times.append(time.perf_counter() - t0)
                return statistics.median(times), n

            with connect(serializer="json", binary=False, timeout=120) as cj:
                a, na = timed(lambda: len(cj.get_data("bench", ["x"], start, end).data["x"]))
            with connect(timeout=120) as cb:
                b, nb = timed(lambda: len(cb.get_data("bench", ["x"], start, end,
                                                      stream=False).data["x"]))
                c_, nc = timed(lambda: len(cb.get_data("bench", ["x"], start, end,
                                                       progress=False).data["x"]))
            assert na == nb == nc == args.samples, (na, nb, nc)
            print(f"end-to-end fetch of {args.samples:,} float64 samples "
                  f"(+ times; {payload / 1e6:.0f} MB of arrays), median of {args.repeat}:")
            for label, t in (("(a) 0.x style: JSON lists       ", a),
                             ("(b) msgpack + binary            ", b),
                             ("(c) msgpack + binary + streaming", c_)):
                print(f"  {label}  {t * 1000:8.1f} ms  {payload / t / 1e6:7.1f} MB/s")
            print(f"  ratio a/b = {a / b:.1f}x   a/c = {a / c_:.1f}x   "
                  f"(target: a/c >= 25x, c >= 150 MB/s)")
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
