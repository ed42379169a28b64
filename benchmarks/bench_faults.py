"""Faults, full configuration: router kill -9 x5 with rejoin times, Modbus kill -9 x20.

    python benchmarks/bench_faults.py [--restarts 5] [--trials 20]

Router: a private router, hub, weather, sensors, hdf5 and Modbus nodes and
one notebook client; ``kill -9`` of the router's process group, restart,
and the seconds until every node serves the same client object again and
its live subscription resumes (target: within 5 s each time, not growing).
Modbus: ``kill -9`` of ``sisock serve modbus`` mid-ingest on one archive,
then per trial the loss (kill time minus last archived sample; target <=
one flush interval, 0.5 s), file readability and the new file.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from faults import kill9_trials, router_restarts  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run both scenarios and print their figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args(argv)
    if args.restarts:
        router(args.restarts)
    if args.trials:
        modbus(args.trials)
    return 0


def router(restarts: int) -> None:
    """Router kill -9 and restart, with rejoin figures."""
    with tempfile.TemporaryDirectory() as tmp:
        f = router_restarts(Path(tmp) / "router", restarts, limit=60)
    print("router kill -9 of the process group, restart:")
    for i, (boot, rejoin, live, w) in enumerate(zip(f["router_boot"], f["rejoin"], f["live"], f["waited_call"])):
        print(
            f"  restart {i + 1}: router boot {boot:.1f} s; then every node serving the same "
            f"client {rejoin:.2f} s, live resumed {live:.2f} s; a call made while down "
            f"{'answered' if 'nodes' in w else 'FAILED ' + w.get('error', '')} after "
            f"{w.get('seconds', 0):.1f} s"
        )
    print(
        f"  client rejoin after each loss (includes the router's boot): "
        f"{[round(x, 2) for x in f['client_rejoin']]} s; all processes alive: "
        f"{f['processes_alive']}"
    )


def modbus(n: int) -> None:
    """Modbus node kill -9 trials, with loss figures."""
    with tempfile.TemporaryDirectory() as tmp:
        trials = kill9_trials(Path(tmp), n)
    losses = [t["loss"] for t in trials]
    print(f"Modbus node kill -9 mid-ingest, {len(trials)} trials (flush interval 0.5 s):")
    print("  loss per trial (ms):", [round(x * 1000) for x in losses])
    print(
        f"  max {max(losses) * 1000:.0f} ms, mean {sum(losses) / len(losses) * 1000:.0f} ms; "
        f"every file readable: {all(t['readable'] for t in trials)}; new file each time: "
        f"{all(t['new_file'] for t in trials)}; times increasing: "
        f"{all(t['monotonic'] for t in trials)}; files at the end: {trials[-1]['files']}"
    )


if __name__ == "__main__":
    sys.exit(main())
