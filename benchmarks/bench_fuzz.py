"""Fuzz, full configuration: >= 10 000 malformed calls through a real router.

Starts a private router, hub and the archive, Modbus (with a simulated
instrument), weather and sensors nodes, then sends hypothesis-generated
``get_data``/``get_fields`` calls to each node and calls to the hub's
procedures (consumer and server roles). Stops at the first contract
violation (printed, shrunk); otherwise prints the calls per target and
their outcomes, and each node's RSS before and after.

    python benchmarks/bench_fuzz.py [--get-data 2000] [--get-fields 500] [--hub 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import psutil  # noqa: E402

from conftest import free_port, wait_port  # noqa: E402
from faults import modbus_config, wait_until  # noqa: E402
from fuzz_calls import (  # noqa: E402
    BASE,
    HUB_CONSUMER,
    HUB_SERVER,
    fuzz_target,  # noqa: E402
    get_data_calls,
    get_fields_calls,
    hub_calls,
)
from privstack import PrivateStack  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz campaign and print the counts."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--get-data", type=int, default=2000, help="get_data calls per node")
    ap.add_argument("--get-fields", type=int, default=500, help="get_fields calls per node")
    ap.add_argument("--hub", type=int, default=1000, help="calls to the hub's procedures")
    args = ap.parse_args(argv)
    from sisock.site import credentials
    from sisock.cli.generate import generate

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        s = PrivateStack(root)
        total = 0
        try:
            s.start_router()
            hub = s.start("hub", "hub")
            generate(root / "arch", days=1, fast_hours=0.2, burst_minutes=1)
            port = free_port()
            sim = s.start("sim", "sim", "modbus", "--port", str(port))
            wait_port(port, 30, sim.proc)
            cfg = modbus_config(root / "m.toml", port, "fz_modbus")
            nodes = {
                "fz_archive": s.start("hdf5", "serve", "hdf5", "--name", "fz_archive", "--archive", str(root / "arch")),
                "fz_weather": s.start("weather", "serve", "weather", "--name", "fz_weather"),
                "fz_sensors": s.start("sensors", "serve", "sensors", "--name", "fz_sensors", "--interval", "0.5"),
                "fz_modbus": s.start(
                    "modbus", "serve", "modbus", "--config", str(cfg), "--archive", str(root / "march")
                ),
            }
            with s.connect(timeout=30) as c:
                assert wait_until(lambda: set(nodes) <= {n["name"] for n in c.nodes()}, 120), "nodes not listed"
            print(f"{'target':12s} {'calls':>6s} {'RSS before':>11s} {'after':>8s}  outcomes")
            for name, proc in nodes.items():
                before = psutil.Process(proc.pid).memory_info().rss
                counts: Counter = Counter()
                t = time.perf_counter()
                with s.connect(timeout=60) as c:
                    prefix = f"{BASE}.consumer.{name}"
                    fuzz_target(c, prefix, get_data_calls(), "get_data", args.get_data, counts)
                    fuzz_target(c, prefix, get_fields_calls(), "get_fields", args.get_fields, counts)
                after = psutil.Process(proc.pid).memory_info().rss
                n = sum(counts.values())
                total += n
                print(
                    f"{name:12s} {n:6d} {before / 2**20:8.0f} MiB {after / 2**20:5.0f} MiB  "
                    f"{dict(sorted(counts.items()))}  ({time.perf_counter() - t:.0f} s)",
                    flush=True,
                )
                assert proc.alive(), proc.log()
            counts = Counter()
            creds = credentials.read(s.home)
            before = psutil.Process(hub.pid).memory_info().rss
            with s.connect(timeout=60) as c:
                fuzz_target(c, BASE, hub_calls(HUB_CONSUMER), None, args.hub // 4, counts)
            with s.connect(user=creds["server"]["authid"], secret=creds["server"]["secret"], timeout=60) as c:
                fuzz_target(c, BASE, hub_calls(HUB_SERVER), None, args.hub - args.hub // 4, counts)
            after = psutil.Process(hub.pid).memory_info().rss
            n = sum(counts.values())
            total += n
            print(
                f"{'hub':12s} {n:6d} {before / 2**20:8.0f} MiB {after / 2**20:5.0f} MiB  {dict(sorted(counts.items()))}"
            )
            assert hub.alive()
            print(
                f"total {total} calls: every reply valid or {BASE}.error.* (never internal), "
                "the caller's session kept throughout, every node up"
            )
        finally:
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
