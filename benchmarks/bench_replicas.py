"""Replicated archive nodes: throughput of 20 consumers with 1 vs 2 replicas.

An archive of one 100 Hz field (default 4 hours, 1.44 M samples) is served
by ``sisock serve hdf5 --replica`` processes under one name. 20 consumers
(4 processes x 5 sessions) hammer it for ``--seconds`` with downsampled
queries: a random 1-hour window at ``min_stride`` 1.8 s (2 000 points, each
query bins 360 000 raw samples on the node). The same run measures 1 replica,
then 2 replicas, ``--rounds`` times, and prints queries/s, latency and the
ratio. Everything (router, hub, replicas, consumers) shares this machine's
cores, so the gain is bounded by what the router and the consumers leave.

Run: ``.venv/bin/python benchmarks/bench_replicas.py [--seconds 15] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchstack import BenchStack, write_archive

from sisock._quiet import silence_bjdata

silence_bjdata()

NAME = "bench"
WINDOW = 3600.0
STRIDE = 1.8


def worker(sessions: int, start: float, end: float, t_begin: float, t_end: float) -> None:
    """Run ``sessions`` consumers from ``t_begin`` to ``t_end``; print counts and latencies."""
    import random

    from sisock.client import connect

    clients = [connect(timeout=60) for _ in range(sessions)]
    done: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def loop(c, seed):
        rng = random.Random(seed)
        while time.time() < t_begin:
            time.sleep(0.005)
        while time.time() < t_end:
            a = rng.uniform(start, end - WINDOW)
            t0 = time.perf_counter()
            try:
                r = c.get_data(NAME, ["x"], a, a + WINDOW, min_stride=STRIDE, progress=False)
                ok = len(r.data["x"]) > 1000
            except Exception:
                ok = False
            with lock:
                if ok and time.time() <= t_end:
                    done.append(time.perf_counter() - t0)
                elif not ok:
                    errors[0] += 1

    threads = [threading.Thread(target=loop, args=(c, i)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    print(json.dumps({"latencies": done, "errors": errors[0]}), flush=True)


def hammer(args, start: float, end: float) -> dict:
    """Run the consumers once against the running replicas."""
    t_begin = time.time() + 3.0  # every session connected before the clock starts
    t_end = t_begin + args.seconds
    per = args.consumers // args.processes
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(per), str(start), str(end), str(t_begin), str(t_end)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(args.processes)
    ]
    lat: list[float] = []
    errors = 0
    for p in procs:
        out, _ = p.communicate(timeout=args.seconds + 120)
        res = json.loads(out.strip().splitlines()[-1])
        lat += res["latencies"]
        errors += res["errors"]
    return {
        "qps": len(lat) / args.seconds,
        "median_ms": statistics.median(lat) * 1000,
        "p95_ms": sorted(lat)[int(0.95 * len(lat))] * 1000,
        "errors": errors,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=4.0, help="archive span at 100 Hz")
    ap.add_argument("--seconds", type=float, default=15.0, help="hammering time per measure")
    ap.add_argument("--consumers", type=int, default=20)
    ap.add_argument("--processes", type=int, default=4, help="consumer processes")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        n, *times = args.worker
        worker(int(n), *map(float, times))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        start, end = write_archive(home / "archive", int(args.hours * 3600 * 100))
        with BenchStack(home) as stack:
            node = ["serve", "hdf5", "--name", NAME, "--archive", str(home / "archive"), "--replica"]
            results: dict[int, list[dict]] = {1: [], 2: []}
            for _ in range(args.rounds):
                first = stack.spawn(*node)
                stack.wait(lambda c: c.call("consumer.get_replicas").get(NAME) == 1, "replica 1")
                results[1].append(hammer(args, start, end))
                second = stack.spawn(*node)
                stack.wait(lambda c: c.call("consumer.get_replicas").get(NAME) == 2, "replica 2")
                results[2].append(hammer(args, start, end))
                stack.stop_proc(first)
                stack.stop_proc(second)
                stack.wait(lambda c: NAME not in c.call("consumer.get_replicas"), "replicas gone")

    print(
        f"{args.consumers} consumers, downsampled queries ({WINDOW:.0f} s window of 100 Hz "
        f"at min_stride {STRIDE} s -> 2000 points), {args.seconds:.0f} s per measure, "
        f"{args.rounds} rounds (best shown):"
    )
    best = {}
    for n in (1, 2):
        for i, r in enumerate(results[n]):
            print(
                f"  round {i + 1}: {n} replica(s): {r['qps']:7.1f} queries/s  "
                f"median {r['median_ms']:6.1f} ms  p95 {r['p95_ms']:6.1f} ms  "
                f"errors {r['errors']}"
            )
        best[n] = max(results[n], key=lambda r: r["qps"])
    print(
        f"  best: 1 replica {best[1]['qps']:.1f} q/s, 2 replicas {best[2]['qps']:.1f} q/s, "
        f"ratio {best[2]['qps'] / best[1]['qps']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
