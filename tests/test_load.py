"""Load, small configuration: concurrent sessions on an archive node while Modbus ingests.

``benchmarks/bench_load.py`` runs the full one (50 sessions x 100 calls on a
year) and prints p50/p99; here only correctness is asserted (no errors, the
Modbus node keeps polling), never a latency.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from conftest import free_port, listed, wait_for, wait_port
from faults import modbus_config
from load import run_load, summary
from sisock.client import connect
from sisock.cli.generate import generate
from sisock.servers.modbus.server import STATS_PREFIX

pytestmark = pytest.mark.timeout(300)


def test_concurrent_sessions_while_ingesting(stack, procs, tmp_path):
    """10 sessions x 12 mixed calls: 0 errors; the Modbus node polls throughout."""
    end = time.time()
    generate(tmp_path / "arch", days=3, end=end, fast_hours=1.2, fast_rate=10, burst_minutes=0.5)
    procs("hdf5", "serve", "hdf5", "--name", "load_arch", "--archive", str(tmp_path / "arch"))
    port = free_port()
    sim = procs("sim", "sim", "modbus", "--port", str(port))
    wait_port(port, 20, sim.proc)
    cfg = modbus_config(tmp_path / "m.toml", port, "load_modbus")
    mb = procs("modbus", "serve", "modbus", "--config", str(cfg), "--archive", str(tmp_path / "march"))
    with connect() as c:
        wait_for(lambda: {"load_arch", "load_modbus"} <= listed(c), 30, "nodes never listed")

    def stats() -> list[dict]:
        return [
            json.loads(line[len(STATS_PREFIX) :])
            for line in mb.log_path.read_text(errors="replace").splitlines()
            if line.startswith(STATS_PREFIX)
        ]

    mb.proc.send_signal(signal.SIGUSR1)  # zero the poll statistics before the load
    # the node writes the figures it zeroes: the reset happened before the load starts
    wait_for(lambda: len(stats()) == 1, 30, "the node did not zero its statistics:\n" + mb.log())
    t_load = time.monotonic()
    r = run_load(stack.url, str(stack.home), "load_arch", sessions=10, calls=12, span=(end - 3 * 86400, end))
    load_seconds = time.monotonic() - t_load
    mb.stop(signal.SIGTERM)
    during = stats()
    assert len(during) == 2, mb.log()
    print("\nload (small):\n" + summary(r) + f"\n  modbus during the load: {during[-1]}")
    assert r["errors"] == [], r["errors"][:5]
    assert r["calls"] == 120
    # the figures cover the load: zeroed before it, written after it
    assert during[-1]["seconds"] >= load_seconds
    assert during[-1]["polls"] > 0 and during[-1]["gaps"] == 0


def _envelope(n: int, total: int | None = None) -> dict:
    """A binary envelope of ``n`` float64 values (a slice of ``total`` when streamed)."""
    import numpy as np

    from sisock.core import wire

    env = wire.encode_array(np.zeros(n), "binary")
    if total is not None:
        env.update(offset=0, total=total)
    return env


@pytest.mark.unit
def test_load_generator_checks_every_kind_of_reply():
    """The load generator counts a short, mismatched or incomplete reply as an error."""
    from load import check_reply

    def reply(n, total=None):
        return {
            "data": {"az": _envelope(n, total)},
            "timeline": {"fast": {"t": _envelope(n, total), "finalized_until": None}},
        }

    parts = [reply(100, 300), reply(100, 300)]
    assert check_reply("hour", reply(100, 300), parts, "az") is None
    assert "announced" in check_reply("hour", reply(100, 300), parts[:1], "az")
    assert check_reply("hour", {"data": {}, "timeline": {}}, [], "az")
    down = {
        "data": {"stage_temp": _envelope(2000)},
        "timeline": {"cryo": {"t": _envelope(2000), "finalized_until": None}},
    }
    assert check_reply("downsampled", down, [], "az") is None
    down["timeline"]["cryo"]["t"] = _envelope(1999)
    assert "times" in check_reply("downsampled", down, [], "az")
    listing = ({"stage_temp": {}, "az": {}}, {})
    assert check_reply("fields", listing, [], "az") is None
    assert "az" in check_reply("fields", ({"stage_temp": {}}, {}), [], "az")
