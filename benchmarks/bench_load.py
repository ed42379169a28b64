"""Load: concurrent consumer sessions on an archive node while a Modbus node ingests at 10 Hz.

Starts a private router, hub, ``sisock serve hdf5`` over a generated year
(cached in ``--dir``), a simulated Modbus instrument and ``sisock serve
modbus`` (10 Hz and 1 Hz groups), then runs ``--sessions`` consumer
sessions x ``--calls`` calls cycling through: the whole year downsampled to
~2000 points, one hour at full resolution (10 Hz, streamed binary), and the
field listing of the last day. Every reply is checked. Prints p50/p99 per
kind and overall, the error count, the Modbus node's poll statistics over
the load (missed polls, gaps), the CPU each process spent per call, and
how late the load generator's own loop ran.

Beside it, in the same run:

* each kind alone from one session (``--per-kind`` calls): its latency
  without queueing and the CPU it costs the router, the node and the
  client;
* the peer: raw TCP round trips of the same shape (same sessions, calls,
  mix and reply bytes; ``tcp_peer.py``), the floor this machine gives
  right now to 50 closed-loop Python clients, whatever sisock does.

Target: 0 errors, p99 <= 100 ms, no missed poll. The machine's load
average is printed beside the figures: on a shared machine the latencies
follow it, the CPU per call much less.

    python benchmarks/bench_load.py [--sessions 50] [--calls 100] [--dir DIR]
        [--transport websocket|rawsocket] [--per-kind 100] [--no-peer]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from faults import modbus_config, wait_until  # noqa: E402
from conftest import free_port, wait_port  # noqa: E402
from load import MIX, run_load, summary  # noqa: E402
from privstack import PrivateStack  # noqa: E402
from tcp_peer import run_peer  # noqa: E402


def loadavg() -> str:
    """The 1-minute load average (and the core count), for the figures' context."""
    try:
        return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:
        return "load average unknown"


def process_group_cpu(pgid: int) -> float:
    """CPU seconds used so far by the processes of group ``pgid`` (Linux /proc; 0 elsewhere)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0.0
    for d in entries:
        if not d.isdigit():
            continue
        try:
            if os.getpgid(int(d)) != pgid:
                continue
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            continue
    return total


class CpuMeter:
    """CPU seconds of named process groups and of this process, between two reads."""

    def __init__(self, groups: dict[str, int]) -> None:
        self.groups = groups
        self._start = self._now()

    def _now(self) -> dict[str, float]:
        out = {name: process_group_cpu(pgid) for name, pgid in self.groups.items()}
        t = os.times()
        out["client"] = t.user + t.system
        return out

    def per_call(self, calls: int) -> str:
        """Milliseconds of CPU per call for each group since this meter started."""
        now = self._now()
        return ", ".join(f"{k} {(now[k] - self._start[k]) / max(calls, 1) * 1e3:.2f}" for k in now)


def year_archive(directory: Path) -> tuple[Path, float]:
    """A generated year (0.1 Hz cryo, 10 Hz fast for the last 2 h), built once."""
    from sisock.cli.generate import generate

    stamp = directory / "year.end"
    arch = directory / "year"
    if not stamp.exists():
        end = time.time()
        t = time.perf_counter()
        generate(
            arch,
            days=365,
            end=end,
            mid_rate=0.1,
            slow_rate=0.01,
            fast_hours=2,
            fast_rate=10,
            burst_rate=0,
            rotate_seconds=7 * 86400,
            overwrite=True,
        )
        print(f"generated a year in {time.perf_counter() - t:.0f} s into {arch}")
        stamp.write_text(repr(end))
    return arch, float(stamp.read_text())


def main(argv: list[str] | None = None) -> int:
    """Run the load once per ``--repeat`` and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2, help="runs (the machine is noisy)")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "sisock-bench-load")
    ap.add_argument(
        "--transport",
        choices=("websocket", "rawsocket"),
        default="websocket",
        help="how the consumer sessions connect (default websocket)",
    )
    ap.add_argument("--per-kind", type=int, default=100, help="calls of each kind alone from one session (0: skip)")
    ap.add_argument("--no-peer", action="store_true", help="skip the raw TCP peer")
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    arch, end = year_archive(args.dir)
    span = (end - 365 * 86400, end)
    with tempfile.TemporaryDirectory() as tmp:
        s = PrivateStack(Path(tmp))
        try:
            s.start_router()
            hub = s.start("hub", "hub")
            node = s.start("hdf5", "serve", "hdf5", "--name", "load_arch", "--archive", str(arch))
            port = free_port()
            sim = s.start("sim", "sim", "modbus", "--port", str(port))
            wait_port(port, 30, sim.proc)
            cfg = modbus_config(Path(tmp) / "m.toml", port, "load_modbus")
            mb = s.start("modbus", "serve", "modbus", "--config", str(cfg), "--archive", str(Path(tmp) / "march"))
            with s.connect(timeout=30) as c:
                ok = wait_until(lambda: {"load_arch", "load_modbus"} <= {n["name"] for n in c.nodes()}, 120)
                assert ok, "nodes not listed"
                c.fields("load_arch", end - 86400, end)  # warm the catalog
            groups = {"router": s.router.pid, "node": node.pid, "modbus": mb.pid, "sim": sim.pid, "hub": hub.pid}
            print(
                f"{args.sessions} sessions x {args.calls} calls over {args.transport}, archive "
                f"{arch} (a year ending {time.ctime(end)})"
            )
            if args.per_kind:
                print(f"each kind alone, 1 session x {args.per_kind} calls (latency; CPU ms per call):")
                for kind in MIX:
                    meter = CpuMeter(groups)
                    r = run_load(
                        s.url, str(s.home), "load_arch", 1, args.per_kind, span, mix=(kind,), transport=args.transport
                    )
                    line = summary(r).splitlines()[0]
                    print(f"{line}; errors {len(r['errors'])}\n    CPU {meter.per_call(r['calls'])}")

            def stats_lines() -> int:
                return mb.log_path.read_text(errors="replace").count("sisock-modbus-stats ")

            for run in range(args.repeat):
                mb.proc.send_signal(signal.SIGUSR1)  # answered by a stats line once zeroed
                assert wait_until(lambda: stats_lines() > run, 30), "statistics not zeroed"
                before = loadavg()
                meter = CpuMeter(groups)
                r = run_load(s.url, str(s.home), "load_arch", args.sessions, args.calls, span, transport=args.transport)
                cpu = meter.per_call(r["calls"])
                print(f"run {run + 1} ({before} before, {loadavg()} after):\n" + summary(r))
                print(f"  CPU ms per call: {cpu}")
                for e in r["errors"][:5]:
                    print("  error:", e)
                if not args.no_peer:
                    p = run_peer(args.sessions, args.calls, free_port())
                    print(
                        f"  peer, raw TCP round trips of the same shape ({loadavg()} after):\n"
                        + "\n".join("  " + line for line in summary(p).splitlines())
                    )
            mb.stop(signal.SIGTERM)
            stats = [
                json.loads(line.split(" ", 1)[1])
                for line in mb.log().splitlines()
                if line.startswith("sisock-modbus-stats ")
            ]
            if stats:
                st = stats[-1]
                print(
                    f"modbus node during the last run: polls {st['polls']}, missed "
                    f"{st['missed']}, gaps {st['gaps']}, poll latency p99 "
                    f"{st['latency_p99_ms']:.1f} ms"
                )
        finally:
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
