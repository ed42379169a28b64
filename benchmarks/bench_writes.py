"""Benchmark operator writes: round trip, and polling while writing.

In a temporary ``SISOCK_HOME`` on free ports: issue an operator account,
start ``sisock router``, ``sisock hub``, ``sisock sim modbus`` and the Modbus
node on the shipped example configuration (its 10 Hz ``fast`` group and
1 Hz ``slow`` group), with the set point's ``min_interval`` removed and its
read-back ``settle`` set by ``--settle``. Then, for ``--seconds``:

- an operator client writes the set point ``--rate`` times per second
  (alternating two values), timing each ``Client.set`` from call to outcome:
  client -> router -> node (checks, audit intent committed) -> device write
  -> read-back -> audit outcome committed -> reply;
- the node polls as usual; at the end it prints its poll statistics
  (``sisock-modbus-stats``: polls, missed ticks, gaps), zeroed by SIGUSR1
  when the writes start.

Prints figures; asserts nothing about time. Target: no missed poll at
10 Hz while writes run at 5/s.

Usage::

    python benchmarks/bench_writes.py                   # 30 s, 5 writes/s, settle 0
    python benchmarks/bench_writes.py --seconds 60 --settle 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchstack import BenchStack

from sisock.site.ports import free_port, wait_port

STATS_PREFIX = "sisock-modbus-stats "  # = sisock.servers.modbus.server.STATS_PREFIX
NODE = "modbus_sim"


def bench_config(port: int, settle: float, audit: Path) -> str:
    """The shipped example pointed at the simulator, tuned for a write benchmark."""
    from sisock.servers.modbus.server import example_config

    text = example_config(port)
    text = re.sub(r"(?m)^min_interval = 1\.0.*$", "", text, count=1)
    text = re.sub(r"(?m)^settle = 0\.2.*$", f"settle = {settle}", text, count=1)
    text = re.sub(r"(?m)^rate = 5\.0.*$", f'rate = 1000.0\naudit = "{audit}"', text, count=1)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time (default 30)")
    parser.add_argument("--rate", type=float, default=5.0, help="writes per second (default 5)")
    parser.add_argument(
        "--settle", type=float, default=0.0, help="read-back settle time of the set point, s (default 0)"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    args = parser.parse_args()

    from sisock.site import accounts
    from sisock.client import connect

    with tempfile.TemporaryDirectory(prefix="bench-writes-") as tmp_dir:
        tmp = Path(tmp_dir)
        secret = accounts.add(tmp, "bench_op", "operator")
        stack = BenchStack(tmp)
        with stack:
            sim_port = free_port()
            sim = stack.spawn("sim", "modbus", "--port", str(sim_port))
            wait_port(sim_port, 30, sim)
            cfg = tmp / "node.toml"
            cfg.write_text(bench_config(sim_port, args.settle, tmp / "audit.sqlite"))
            node = stack.spawn("serve", "modbus", "--config", str(cfg), "--archive", str(tmp / "archive"))
            node_log = Path(stack.home / f"{len(stack.procs) - 1}-serve.log")
            with connect(user="bench_op", secret=secret, timeout=30) as c:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        c.points(NODE)
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            print(node_log.read_text()[-3000:])
                            raise
                        time.sleep(0.2)
                time.sleep(args.warmup)
                values = [295.0, 295.5]
                current = c.set(NODE, "setpoint", values[0], reason="benchmark start")
                os.kill(node.pid, signal.SIGUSR1)  # zero the node's poll statistics
                t0 = time.monotonic()
                rtt, node_ms, status = [], [], Counter()
                k = 0
                while time.monotonic() - t0 < args.seconds:
                    due = t0 + k / args.rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    k += 1
                    s = time.perf_counter()
                    out = c.set(NODE, "setpoint", values[k % 2], reason="benchmark")
                    rtt.append(time.perf_counter() - s)
                    node_ms.append(out["t_done"] - out["t_received"])
                    status[out["status"]] += 1
                elapsed = time.monotonic() - t0
                audit = c.audit(NODE, -3600, 0)
            stack.stop_proc(node)
            text = node_log.read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith(STATS_PREFIX)]
    stats = json.loads(lines[-1][len(STATS_PREFIX) :]) if lines else {}
    r = np.asarray(rtt) * 1e3
    n = np.asarray(node_ms) * 1e3
    print(
        f"operator writes: {len(rtt)} in {elapsed:.1f} s ({len(rtt) / elapsed:.2f}/s), "
        f"settle {args.settle} s; statuses {dict(status)}; first write {current['status']}"
    )
    print(
        f"  round trip (client.set -> outcome): median {np.median(r):.2f} ms, "
        f"p99 {np.percentile(r, 99):.2f} ms, mean {r.mean():.2f} ms, max {r.max():.2f} ms"
    )
    print(f"  inside the node (t_done - t_received): median {np.median(n):.2f} ms, p99 {np.percentile(n, 99):.2f} ms")
    print(f"  audit records: {len(audit)}")
    if stats:
        print(
            f"  polling meanwhile ({stats['seconds']} s, 10 Hz + 1 Hz groups): "
            f"{stats['polls']} polls, {stats['missed']} missed, {stats['gaps']} gaps, "
            f"poll latency mean {stats['latency_mean_ms']:.2f} ms, "
            f"p99 {stats['latency_p99_ms']:.2f} ms, max {stats['latency_max_ms']:.2f} ms"
        )
    else:
        print("  (no statistics line from the node)")
    print(f"  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
