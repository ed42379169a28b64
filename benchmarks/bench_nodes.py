"""Resident memory per data node: one node per process vs many nodes in one process.

For each count N it starts, on a private router and hub
(:class:`benchstack.BenchStack`):

* ``separate``: N ``sisock serve`` processes of one node each;
* ``shared``: one ``sisock serve`` process hosting the N nodes
  (``sisock serve hdf5 --archive D1 --name a1 --archive D2 --name a2 ...``,
  ``sisock serve modbus --config devices.toml`` with N ``[[device]]``
  tables);

waits until the hub lists every node, asks each node what a dashboard
asks (``get_fields`` and a downsampled day, twice), lets Modbus nodes poll
and archive for ``--settle`` seconds, then reads the memory of the node
processes (psutil): RSS (what ``top`` shows; pages of shared libraries
count in every process), PSS (shared pages split between the processes
that map them: the fair sum) and USS (pages only that process has). The
figure per node is the sum over the layout's processes divided by N; for
``shared`` the marginal cost of one more node, (RSS(N) - RSS(1)) / (N - 1),
is printed too.

Archives: one generated archive (``sisock generate``, one day: 0.1 Hz,
1 Hz and 100 Hz for an hour; 2 MiB) copied N times, one directory per node
(nodes of one process never share a directory). Modbus: N simulated
devices served by one simulator process (one port each), each polled with
``servers/modbus/example.toml`` (10 Hz and 1 Hz groups, 24 points),
archived under the stack's ``SISOCK_HOME``.

Asserts nothing. Prints the load average beside the figures.

Usage::

    python benchmarks/bench_nodes.py [--archives 1,10,50] [--devices 1,20] [--settle 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchstack import BenchStack

from sisock.site.ports import free_port, wait_port

#: Runs N simulated devices in one process: ``python -c SIMULATORS PORT...``.
SIMULATORS = """
import asyncio, sys
from sisock.servers.modbus.simulator import Simulator

async def main(ports):
    sims = [Simulator(port=p, seed=i) for i, p in enumerate(ports)]
    for s in sims:
        await s.start()
    await asyncio.Event().wait()

asyncio.run(main([int(p) for p in sys.argv[1:]]))
"""


def memory(pids: list[int]) -> dict[str, float]:
    """Summed RSS, PSS and USS of ``pids`` in MiB."""
    import psutil

    out = {"rss": 0.0, "pss": 0.0, "uss": 0.0}
    for pid in pids:
        info = psutil.Process(pid).memory_full_info()
        for key in out:
            out[key] += getattr(info, key) / 2**20
    return out


def listed(client, names: set[str]) -> bool:
    return names <= {n["name"] for n in client.nodes()}


def exercise(stack: BenchStack, names: list[str], field: str) -> None:
    """What a dashboard asks each node: its fields and a downsampled day, twice."""
    from sisock.client import connect

    with connect(timeout=120) as c:
        for _ in range(2):
            for name in names:
                c.fields(name, -86400, 0)
                c.get_data(name, [field], -86400, 0, min_stride=60)


def measure(
    stack: BenchStack, layout: str, argvs: list[list[str]], names: list[str], field: str, settle: float
) -> dict[str, float]:
    """Start the processes, wait, exercise, settle, read their memory, stop them."""
    procs = [stack.spawn(*argv) for argv in argvs]
    try:
        stack.wait(lambda c: listed(c, set(names)), f"{len(names)} {layout} nodes", timeout=600)
        exercise(stack, names, field)
        time.sleep(settle)
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a node process exited ({p.args})")
        return memory([p.pid for p in procs])
    finally:
        for p in procs:
            stack.stop_proc(p)
            stack.procs.remove(p)
        stack.wait(lambda c: not set(names) & {n["name"] for n in c.nodes()}, "nodes to leave", timeout=120)


def archives(root: Path, n: int) -> list[Path]:
    """``n`` copies of one small generated archive."""
    first = root / "archive-0"
    if not first.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "sisock",
                "generate",
                str(first),
                "--days",
                "1",
                "--fast-hours",
                "1",
                "--burst-rate",
                "0",
            ],
            check=True,
            capture_output=True,
        )
    out = []
    for i in range(n):
        d = root / f"archive-{i}"
        if not d.exists():
            shutil.copytree(first, d)
        out.append(d)
    return out


def row(what: str, layout: str, n: int, processes: int, mem: dict[str, float], marginal: float | None = None) -> None:
    extra = f"   +{marginal:6.1f} MiB/node" if marginal is not None else ""
    print(
        f"  {what:7s} {layout:9s} {n:4d} nodes {processes:4d} proc   "
        f"RSS {mem['rss']:8.0f} MiB  per node: RSS {mem['rss'] / n:6.1f}  "
        f"PSS {mem['pss'] / n:6.1f}  USS {mem['uss'] / n:6.1f} MiB{extra}",
        flush=True,
    )


def bench_archives(
    stack: BenchStack, root: Path, counts: list[int], settle: float, max_separate: int, separate_only: bool = False
) -> None:
    dirs = archives(root, max(counts))
    one: dict[str, float] | None = None
    for n in counts:
        names = [f"bench_a{i}" for i in range(n)]
        pairs = [(names[i], dirs[i]) for i in range(n)]
        if n <= max_separate:
            mem = measure(
                stack,
                "separate",
                [["serve", "hdf5", "--archive", str(d), "--name", name] for name, d in pairs],
                names,
                "stage_temp",
                settle,
            )
            row("hdf5", "separate", n, n, mem)
        if separate_only:
            continue
        argv = ["serve", "hdf5"]
        for name, d in pairs:
            argv += ["--archive", str(d), "--name", name]
        mem = measure(stack, "shared", [argv], names, "stage_temp", settle)
        if n == 1:
            one = mem
        marginal = (mem["rss"] - one["rss"]) / (n - 1) if one is not None and n > 1 else None
        row("hdf5", "shared", n, 1, mem, marginal)


def bench_devices(
    stack: BenchStack, root: Path, counts: list[int], settle: float, max_separate: int, separate_only: bool = False
) -> None:
    from sisock.servers.modbus.server import example_config

    ports = [free_port() for _ in range(max(counts))]
    sims = subprocess.Popen(
        [sys.executable, "-c", SIMULATORS, *map(str, ports)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for p in ports:
            wait_port(p, 60, sims)
        one: dict[str, float] | None = None
        for n in counts:
            names = [f"bench_m{i}" for i in range(n)]
            files = []
            for i in range(n):
                f = root / f"device-{i}.toml"
                f.write_text(example_config(ports[i]).replace('name = "modbus_sim"', f'name = "{names[i]}"', 1))
                files.append(f)
            if n <= max_separate:
                mem = measure(
                    stack,
                    "separate",
                    [["serve", "modbus", "--config", str(f)] for f in files],
                    names,
                    "t_inlet",
                    settle,
                )
                row("modbus", "separate", n, n, mem)
            if separate_only:
                continue
            devices = root / f"devices-{n}.toml"
            devices.write_text(
                "".join(f'[[device]]\nname = "{names[i]}"\ninclude = "{files[i].name}"\n\n' for i in range(n))
            )
            mem = measure(stack, "shared", [["serve", "modbus", "--config", str(devices)]], names, "t_inlet", settle)
            if n == 1:
                one = mem
            marginal = (mem["rss"] - one["rss"]) / (n - 1) if one is not None and n > 1 else None
            row("modbus", "shared", n, 1, mem, marginal)
    finally:
        sims.terminate()
        sims.wait(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archives", default="1,10,50", help="archive node counts (comma-separated)")
    ap.add_argument("--devices", default="1,20", help="Modbus device counts (comma-separated)")
    ap.add_argument(
        "--settle", type=float, default=5.0, help="seconds the nodes run after the queries before memory is read"
    )
    ap.add_argument("--max-separate", type=int, default=50, help="largest count also run as one process per node")
    ap.add_argument(
        "--separate-only", action="store_true", help="measure one node per process only (e.g. with an older sisock)"
    )
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.archives.split(",") if x]
    devices = [int(x) for x in args.devices.split(",") if x]
    root = Path(tempfile.mkdtemp(prefix="sisock-bench-nodes-"))
    print(f"load average at start: {open('/proc/loadavg').read().strip()}")
    print(
        "resident memory of the node processes, summed, and per node "
        "(RSS counts shared libraries in each process; PSS splits them)"
    )
    try:
        (root / "home").mkdir()
        with BenchStack(root / "home") as stack:
            if counts:
                bench_archives(stack, root, counts, args.settle, args.max_separate, args.separate_only)
            if devices:
                bench_devices(stack, root, devices, args.settle, args.max_separate, args.separate_only)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average at end: {open('/proc/loadavg').read().strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
