"""Benchmark the Modbus poller core: CPU, missed polls, latency, sink time.

Starts the simulator with ``--registers N`` extra holding registers of mixed
types in one subprocess, and the poller core (config built from the same
layout, a few derived points, sink into a real archive when
``sisock.archive.writer.ArchiveWriter`` is available, else an in-memory
list) in a SEPARATE subprocess, polling at ``--rate`` Hz for ``--seconds``.
Prints figures; asserts nothing about time.

Targets: <= 25 % of one core for the node process and 0 missed polls at
10 Hz with 1000 registers.

Usage::

    python benchmarks/bench_modbus.py                  # 60 s, 10 Hz, 1000 registers
    python benchmarks/bench_modbus.py --seconds 20
    python benchmarks/bench_modbus.py --groups 2 --connections per_group
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"simulator exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"simulator not listening on {port} after {timeout} s")


# ------------------------------------------------------------------ node side

class ThreadedSink:
    """Hand samples to a writer thread (as a node should for blocking disk I/O).

    The poller's call only enqueues; the thread appends, concatenating
    whatever queued up for a group (e.g. during an HDF5 flush) into one batch.
    """

    def __init__(self, append) -> None:
        self.append = append
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.batches: list[int] = []
        self.thread = threading.Thread(target=self._run, name="archive-writer", daemon=True)
        self.thread.start()

    def __call__(self, group: str, t: np.ndarray, values: dict) -> None:
        self.queue.put((group, t, values))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        done = False
        while not done:
            items = [self.queue.get()]
            while not self.queue.empty():
                items.append(self.queue.get())
            if items[-1] is None:
                items.pop()
                done = True
            by_group: dict[str, list] = {}
            for group, t, values in items:
                by_group.setdefault(group, []).append((t, values))
            for group, batch in by_group.items():
                t = np.concatenate([b[0] for b in batch])
                values = {k: np.concatenate([b[1][k] for b in batch]) for k in batch[0][1]}
                self.batches.append(len(batch))
                self.append(group, t, values)


def build_config(port: int, registers: int, rate: float, groups: int, connections: str):
    from sisock.servers.modbus.config import parse_config
    from sisock.servers.modbus.simulator import extra_layout

    layout = extra_layout(registers)
    per = -(-len(layout) // groups)
    out = []
    for g in range(groups):
        chunk = layout[g * per:(g + 1) * per]
        points = [{"name": n, "kind": "holding", "address": a, "type": t} for n, t, a in chunk]
        floats = [n for n, t, _a in chunk if t.startswith("float")][:20]
        derived = [{"name": f"g{g}_d{i}", "expr": f"({{{a}}} - {{{b}}}) / 2 + sqrt(abs({{{a}}}))"}
                   for i, (a, b) in enumerate(zip(floats[::2], floats[1::2]))]
        out.append({"name": f"bench{g}", "interval": 1.0 / rate, "point": points,
                    "derived": derived})
    return parse_config({
        "node": {"name": "modbus_bench"},
        "device": {"host": "127.0.0.1", "port": port, "timeout": 1.0,
                   "connections": connections},
        "group": out,
    })


def node_main(args: argparse.Namespace) -> None:
    """Run the poller for ``args.seconds``; print one JSON line of results."""
    from sisock.servers.modbus.poller import Poller

    cfg = build_config(args.port, args.registers, args.rate, args.groups, args.connections)
    append_times: list[float] = []
    writer = None
    tmp = None
    sink_kind = args.sink
    if sink_kind in ("auto", "archive"):
        try:
            from sisock.archive.writer import ArchiveWriter
        except ImportError:
            if sink_kind == "archive":
                raise
            sink_kind = "memory"
        else:
            sink_kind = "archive"
            tmp = tempfile.TemporaryDirectory(prefix="bench_modbus_")
            writer = ArchiveWriter(tmp.name)
            for g in cfg.groups:
                writer.define_timeline(g.name, g.field_specs())
    memory: list = []

    def append(group: str, t: np.ndarray, values: dict) -> None:
        t0 = time.perf_counter()
        if writer is not None:
            writer.append(group, t, values)
        else:
            memory.append((group, t, values))
        append_times.append(time.perf_counter() - t0)

    sink = ThreadedSink(append) if args.sink_thread else append

    async def main() -> tuple[Poller, float, float]:
        poller = Poller(cfg, sink)
        task = asyncio.create_task(poller.run())
        await asyncio.sleep(1.0)  # warm-up: connect, first polls
        for s in poller.stats.values():  # measure the steady state only
            s.polls = s.gaps = s.missed = s.requests = 0
            s.latencies.clear()
        append_times.clear()
        r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        await asyncio.sleep(args.seconds)
        r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        poller.stop()
        await task
        if isinstance(sink, ThreadedSink):
            sink.close()
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        return poller, cpu, w1 - w0

    poller, cpu, wall = asyncio.run(main())
    if writer is not None:
        writer.close()
    if tmp is not None:
        tmp.cleanup()
    lat = np.concatenate([np.asarray(s.latencies) for s in poller.stats.values()])
    app = np.asarray(append_times)
    print(json.dumps({
        "sink": sink_kind,
        "groups": len(cfg.groups),
        "points": sum(len(g.points) for g in cfg.groups),
        "derived": sum(len(g.derived) for g in cfg.groups),
        "requests_per_poll": [len(d.requests) for d in poller.decoders.values()],
        "cpu_s": cpu,
        "wall_s": wall,
        "polls": sum(s.polls for s in poller.stats.values()),
        "gaps": sum(s.gaps for s in poller.stats.values()),
        "missed": sum(s.missed for s in poller.stats.values()),
        "requests": sum(s.requests for s in poller.stats.values()),
        "lat_mean_ms": float(lat.mean() * 1e3) if lat.size else None,
        "lat_p99_ms": float(np.percentile(lat, 99) * 1e3) if lat.size else None,
        "lat_max_ms": float(lat.max() * 1e3) if lat.size else None,
        "appends": int(app.size),
        "append_mean_ms": float(app.mean() * 1e3) if app.size else None,
        "append_p99_ms": float(np.percentile(app, 99) * 1e3) if app.size else None,
        "append_max_ms": float(app.max() * 1e3) if app.size else None,
    }), flush=True)


# ------------------------------------------------------------------ driver

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="measured run time (default 60)")
    p.add_argument("--rate", type=float, default=10.0, help="polls per second (default 10)")
    p.add_argument("--registers", type=int, default=1000, help="registers polled (default 1000)")
    p.add_argument("--groups", type=int, default=1, help="split the points into K groups")
    p.add_argument("--connections", choices=("shared", "per_group"), default="shared")
    p.add_argument("--sink", choices=("auto", "archive", "memory"), default="auto")
    p.add_argument("--sink-thread", action=argparse.BooleanOptionalAction, default=True,
                   help="append from a writer thread (default) or on the event loop")
    p.add_argument("--node", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.node:
        node_main(args)
        return 0

    import psutil

    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    sim = subprocess.Popen(
        [sys.executable, "-m", "sisock.servers.modbus.simulator", "--port", str(port),
         "--registers", str(args.registers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )
    try:
        wait_port(port, sim)
        sim_ps = psutil.Process(sim.pid)
        sim_cpu0 = sum(sim_ps.cpu_times()[:2])
        node_cmd = [sys.executable, os.path.abspath(__file__), "--node", "--port", str(port),
                    "--seconds", str(args.seconds), "--rate", str(args.rate),
                    "--registers", str(args.registers), "--groups", str(args.groups),
                    "--connections", args.connections, "--sink", args.sink,
                    "--sink-thread" if args.sink_thread else "--no-sink-thread"]
        t0 = time.monotonic()
        out = subprocess.run(node_cmd, capture_output=True, text=True, env=env,
                             timeout=args.seconds + 60)
        elapsed = time.monotonic() - t0
        sim_cpu = sum(sim_ps.cpu_times()[:2]) - sim_cpu0
    finally:
        sim.terminate()
        try:
            sim.wait(5)
        except subprocess.TimeoutExpired:
            sim.kill()
    if out.returncode != 0:
        print(out.stdout, out.stderr, file=sys.stderr)
        return 1
    r = json.loads(out.stdout.strip().splitlines()[-1])
    expected = args.rate * r["wall_s"] * r["groups"]
    cpu_frac = r["cpu_s"] / r["wall_s"]
    print(f"Modbus poller benchmark: {args.registers} registers "
          f"({r['points']} points + {r['derived']} derived) in {r['groups']} group(s) at "
          f"{args.rate:g} Hz for {r['wall_s']:.1f} s, connections={args.connections}, "
          f"sink={r['sink']} ({'writer thread' if args.sink_thread else 'on the event loop'})")
    print(f"  requests per poll         {r['requests_per_poll']}")
    print(f"  node CPU                  {cpu_frac * 100:.1f} % of one core "
          f"({r['cpu_s']:.2f} CPU s / {r['wall_s']:.1f} s)   target <= 25 %")
    print(f"  polls done / expected     {r['polls']} / {expected:.0f}")
    print(f"  polls missed              {r['missed']}   target 0")
    print(f"  gaps (failed polls)       {r['gaps']}")
    print(f"  poll latency              mean {r['lat_mean_ms']:.2f} ms, "
          f"p99 {r['lat_p99_ms']:.2f} ms, max {r['lat_max_ms']:.2f} ms")
    print(f"  sink append per batch     mean {r['append_mean_ms']:.3f} ms, "
          f"p99 {r['append_p99_ms']:.3f} ms, max {r['append_max_ms']:.2f} ms "
          f"(includes periodic flushes; {r['appends']} appends for {r['polls']} polls)")
    print(f"  simulator CPU (for info)  {sim_cpu / elapsed * 100:.1f} % of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
