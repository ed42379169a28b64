"""Fuzz suite, small configuration: malformed calls through the real router.

Every reply is valid or a ``{base}.error.*`` (never ``internal``) with a
readable message; the caller's session survives every call; the nodes stay
up and their memory bounded. ``benchmarks/bench_fuzz.py`` runs >= 10 000
calls and prints the counts.
"""

from __future__ import annotations

from collections import Counter

import psutil
import pytest

from conftest import free_port, listed, wait_for, wait_port
from faults import modbus_config
from fuzz_calls import BASE, HUB_CONSUMER, HUB_SERVER, fuzz_target, get_data_calls, get_fields_calls, hub_calls
from sisock.site import credentials
from sisock.client import connect
from sisock.cli.generate import generate

pytestmark = pytest.mark.timeout(300)

#: Calls per node and procedure in ``make test`` (the benchmark runs many more).
SMALL = {"get_data": 120, "get_fields": 40}


@pytest.fixture(scope="module")
def fuzz_nodes(stack, tmp_path_factory):
    """Archive, weather, sensors and Modbus nodes (with a simulator) for fuzzing."""
    root = tmp_path_factory.mktemp("fuzz")
    generate(root / "arch", days=0.1, fast_hours=0.05, burst_minutes=0.5)
    port = free_port()
    procs = [stack.start("sim", "sim", "modbus", "--port", str(port))]
    wait_port(port, 30, procs[0].proc)
    cfg = modbus_config(root / "m.toml", port, "fz_modbus")
    procs += [
        stack.start("hdf5", "serve", "hdf5", "--name", "fz_archive", "--archive", str(root / "arch")),
        stack.start("weather", "serve", "weather", "--name", "fz_weather"),
        stack.start("sensors", "serve", "sensors", "--name", "fz_sensors", "--interval", "0.5"),
        stack.start("modbus", "serve", "modbus", "--config", str(cfg), "--archive", str(root / "march")),
    ]
    names = {"fz_archive": procs[1], "fz_weather": procs[2], "fz_sensors": procs[3], "fz_modbus": procs[4]}
    with connect() as c:
        wait_for(lambda: set(names) <= listed(c), 40, "fuzz nodes never listed")
    yield names
    for p in procs:
        p.stop()


def rss(proc) -> int:
    """Resident memory of a node process, bytes."""
    return psutil.Process(proc.pid).memory_info().rss


@pytest.mark.parametrize("node", ["fz_archive", "fz_weather", "fz_sensors", "fz_modbus"])
def test_fuzz_node(fuzz_nodes, node):
    """Malformed get_data/get_fields at one node: valid or {base}.error.*, session kept."""
    proc = fuzz_nodes[node]
    before = rss(proc)
    counts: Counter = Counter()
    with connect(timeout=30) as c:
        prefix = f"{BASE}.consumer.{node}"
        fuzz_target(c, prefix, get_data_calls(), "get_data", SMALL["get_data"], counts, True)
        fuzz_target(c, prefix, get_fields_calls(), "get_fields", SMALL["get_fields"], counts, True)
        assert c.call(f"{prefix}.get_fields", -60, 0) is not None  # same session still works
    after = rss(proc)
    print(
        f"\nfuzz {node}: {sum(counts.values())} calls {dict(counts)}; "
        f"RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB"
    )
    assert proc.alive(), proc.log()
    assert counts["ok"] > 0 and sum(v for k, v in counts.items() if k.startswith("error.")) > 0
    assert counts["unsendable"] < sum(counts.values()) / 5, "most calls must reach the node"
    assert after < before + 200 * 2**20, "node memory grew by more than 200 MiB"


def test_fuzz_hub(fuzz_nodes, stack):
    """Malformed calls to the hub's procedures (server role): valid or {base}.error.*."""
    creds = credentials.read(stack.home)
    counts: Counter = Counter()
    with connect(timeout=30) as c:  # consumers may call only get_data_node
        fuzz_target(c, BASE, hub_calls(HUB_CONSUMER), None, 50, counts, True)
    with connect(
        user=creds["server"]["authid"], secret=creds["server"]["secret"], timeout=30
    ) as c:  # data nodes: add, subtract, claim
        fuzz_target(c, BASE, hub_calls(HUB_SERVER), None, 100, counts, True)
    with connect() as c:
        assert set(fuzz_nodes) <= listed(c), "fuzzing the hub must not unlist nodes"
    print(f"\nfuzz hub: {sum(counts.values())} calls {dict(counts)}")
    assert stack.hub.alive(), stack.hub.log()
    assert counts["ok"] > 0
