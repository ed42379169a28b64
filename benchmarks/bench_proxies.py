"""Router with proxy workers: 1 M-sample fetches by 4 concurrent clients, 0 vs 2 proxies.

An archive node serves one 100 Hz float64 field of ``--samples`` samples.
4 client processes each fetch the whole range (values + times, 16 MB,
msgpack + binary + streaming) ``--fetches`` times at once. The same run
measures a plain router (``sisock router``) and one with 2 proxy workers
(``sisock router --proxies 2``), ``--rounds`` times, and prints aggregate
MB/s, the median fetch time and the CPU seconds each part of the router
spent (router worker vs proxies) per fetch.

Run: ``.venv/bin/python benchmarks/bench_proxies.py [--fetches 5] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchstack import BenchStack, write_archive

from sisock._quiet import silence_bjdata

silence_bjdata()

NAME = "bench"


def worker(fetches: int, start: float, end: float, t_begin: float, samples: int) -> None:
    """Fetch the whole range ``fetches`` times from ``t_begin``; print the durations."""
    from sisock.client import connect

    with connect(timeout=120) as c:
        while time.time() < t_begin:
            time.sleep(0.005)
        out = []
        for _ in range(fetches):
            t0 = time.perf_counter()
            r = c.get_data(NAME, ["x"], start, end + 1, progress=False)
            out.append(time.perf_counter() - t0)
            assert len(r.data["x"]) == samples, len(r.data["x"])
    print(json.dumps(out), flush=True)


def crossbar_cpu(router: subprocess.Popen) -> dict[str, float]:
    """CPU seconds so far of the router worker and of the proxy workers."""
    out = {"router": 0.0, "proxies": 0.0}
    for p in psutil.Process(router.pid).children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            t = p.cpu_times()
        except psutil.Error:
            continue
        if "--klass" in cmd or "crossbar-worker" in cmd or "worker" in p.name():
            kind = "proxies" if "proxy" in cmd.lower() else "router"
            out[kind] += t.user + t.system
    return out


def measure(args, proxies: int, tmp: Path, archive: Path, start: float, end: float) -> dict:
    """One configuration: start a stack, run the clients, stop it."""
    home = tmp / f"home-{proxies}-{time.monotonic_ns()}"
    home.mkdir()
    with BenchStack(home, proxies=proxies, tls=args.tls) as stack:
        stack.spawn("serve", "hdf5", "--name", NAME, "--archive", str(archive), "--max-samples", str(4 * args.samples))
        stack.wait(lambda c: NAME in {n["name"] for n in c.nodes()}, "archive node")
        router = stack.procs[0]
        cpu0 = crossbar_cpu(router)
        t_begin = time.time() + 3.0
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    str(args.fetches),
                    str(start),
                    str(end),
                    str(t_begin),
                    str(args.samples),
                ],
                stdout=subprocess.PIPE,
                text=True,
                env=stack.env,
            )
            for _ in range(args.clients)
        ]
        durations = []
        for p in procs:
            out, _ = p.communicate(timeout=600)
            if p.returncode != 0:
                raise RuntimeError(f"client failed with code {p.returncode}")
            durations += json.loads(out.strip().splitlines()[-1])
        wall = time.time() - t_begin
        cpu1 = crossbar_cpu(router)
    fetches = args.clients * args.fetches
    payload = 16 * args.samples * fetches
    return {
        "mbps": payload / wall / 1e6,
        "median_ms": statistics.median(durations) * 1000,
        "router_cpu_ms": (cpu1["router"] - cpu0["router"]) / fetches * 1000,
        "proxy_cpu_ms": (cpu1["proxies"] - cpu0["proxies"]) / fetches * 1000,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--fetches", type=int, default=5, help="fetches per client")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tls", action="store_true", help="wss:// (the proxies then carry TLS)")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        n, start, end, t_begin, samples = args.worker
        worker(int(n), float(start), float(end), float(t_begin), int(samples))
        return 0

    with tempfile.TemporaryDirectory(prefix="sbp") as tmp:
        tmp = Path(tmp)
        start, end = write_archive(tmp / "archive", args.samples)
        results: dict[int, list[dict]] = {0: [], 2: []}
        for _ in range(args.rounds):
            for proxies in (0, 2):
                results[proxies].append(measure(args, proxies, tmp, tmp / "archive", start, end))

    print(
        f"{args.clients} clients x {args.fetches} fetches of {args.samples:,} float64 samples "
        f"(+ times, {16 * args.samples / 1e6:.0f} MB each; msgpack, binary, streamed"
        f"{', TLS' if args.tls else ''}), "
        f"{args.rounds} rounds (best shown):"
    )
    for proxies in (0, 2):
        for i, r in enumerate(results[proxies]):
            print(
                f"  round {i + 1}: {proxies} proxies: {r['mbps']:7.1f} MB/s aggregate  "
                f"median fetch {r['median_ms']:7.1f} ms  CPU per fetch: router worker "
                f"{r['router_cpu_ms']:5.1f} ms, proxies {r['proxy_cpu_ms']:5.1f} ms"
            )
    best = {p: max(results[p], key=lambda r: r["mbps"]) for p in (0, 2)}
    print(
        f"  best: 0 proxies {best[0]['mbps']:.1f} MB/s, 2 proxies {best[2]['mbps']:.1f} MB/s, "
        f"ratio {best[2]['mbps'] / best[0]['mbps']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
