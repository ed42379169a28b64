"""Fault suite (small configuration; benchmarks/bench_faults.py runs the full one).

Router killed and restarted, a slow node, a full disk under the Modbus
archive, and kill -9 of the Modbus node during ingest. Each scenario is
bounded and stops by itself; figures are printed (run with ``-s``).
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest

from conftest import REPO, free_port, listed, wait_for, wait_port
from faults import kill9_trials, modbus_config, router_restarts, tmpfs, umount
from sisock.client import ClientError, connect
from slow_node import STARTED

pytestmark = pytest.mark.timeout(300)


@pytest.mark.integration  # starts and kills its own router
def test_router_kill9_five_times(tmp_path):
    """kill -9 of the router's process group, 5 restarts: everything serves again.

    Hub, every node kind (weather, sensors, hdf5, Modbus) and one notebook
    client (the same ``connect()`` object, its live subscription resumed)
    serve again after each restart; a call made while the router is down
    waits and answers. Rejoin times are printed; the bound asserted is
    generous (busy machine), the tight target lives in the benchmark.
    """
    f = router_restarts(tmp_path, restarts=5, limit=60)
    print(
        "\nrouter kill -9 x5: boot",
        [f"{x:.1f}" for x in f["router_boot"]],
        "s; all nodes serving again",
        [f"{x:.2f}" for x in f["rejoin"]],
        "s; live resumed",
        [f"{x:.2f}" for x in f["live"]],
        "s after the router accepted",
    )
    assert len(f["rejoin"]) == 5 and len(f["live"]) == 5
    assert f["processes_alive"], f["logs"]
    for waited in f["waited_call"]:
        assert "error" not in waited, waited
        assert isinstance(waited["nodes"], list)
    assert len(f["client_rejoin"]) == 5


def test_slow_node_blocks_nothing(stack, procs, client):
    """A get_data that takes 30 s blocks neither other nodes, nor the hub, nor its get_fields."""
    slow = procs("slow", sys.executable, str(REPO / "tests" / "slow_node.py"), "slow_f", module=None)
    procs("wx", "serve", "weather", "--name", "wx_slowtest")
    wait_for(lambda: {"slow_f", "wx_slowtest"} <= listed(client), 30, "nodes never listed")
    slow_done = threading.Event()

    def slow_call():
        with connect(timeout=60) as c:
            try:
                c.call("consumer.slow_f.get_data", ["x"], -10, 0, timeout=60)
            except ClientError:
                pass
            slow_done.set()

    threading.Thread(target=slow_call, daemon=True).start()
    # the slow call is running inside the node (not lost, not refused, not queued)
    wait_for(
        lambda: STARTED in slow.log() or slow_done.is_set(),
        30,
        "the slow get_data never reached the node:\n" + slow.log(),
    )
    assert not slow_done.is_set(), "the slow call ended instead of running:\n" + slow.log()
    field, _ = client.fields("slow_f", -10, 0)
    assert "x" in field
    r = client.get_data("wx_slowtest", ["temperature"], -7200, 0)
    assert len(r.data["temperature"]) > 0
    assert "slow_f" in {n["name"] for n in client.nodes()}
    for _ in range(5):  # several more answers while the slow one is still pending
        client.fields("slow_f", -10, 0)
    assert not slow_done.is_set(), "the others must have answered while get_data was pending"
    slow.kill()  # its worker thread sleeps on; no need to wait for a clean shutdown


@pytest.fixture
def small_fs(tmp_path):
    """A 24 MiB tmpfs (real ENOSPC conditions), mounted as root or through ``sudo -n``.

    The one skip of the suite, documented in the README ("Archive disk full"):
    where neither is permitted, a real full filesystem cannot be made, and
    ``test_sink_low_space_injected`` covers the same path in-process.
    """
    mnt = tmp_path / "fs"
    if not tmpfs(mnt, 24):
        pytest.skip(
            "mounting a 24 MiB tmpfs needs root or password-less sudo, neither of which this "
            "user has; the low-space path is covered in-process by test_sink_low_space_injected "
            "(README, 'Archive disk full')"
        )
    yield mnt
    umount(mnt)


def _fill(mnt, leave: int):
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    filler = mnt / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - leave, 0))
    return filler


def test_disk_full_during_modbus_ingest(stack, procs, client, small_fs, tmp_path):
    """Archive filesystem full: one clear error; polling and live go on; history stays;
    archiving resumes by itself in a new file when space returns; nothing archived is lost."""
    port = free_port()
    sim = procs("sim", "sim", "modbus", "--port", str(port))
    wait_port(port, 20, sim.proc)
    cfg = modbus_config(tmp_path / "n.toml", port, "modbus_full")
    archive = small_fs / "archive"
    node = procs("modbus", "serve", "modbus", "--config", str(cfg), "--archive", str(archive), "--min-free-mb", "4")
    wait_for(lambda: "modbus_full" in listed(client), 30, "node never listed:\n" + node.log())

    def archived(start):
        tl = client.get_data("modbus_full", ["t_inlet"], start, 0).timelines.get("fast")
        return tl.t if tl is not None else np.empty(0)

    wait_for(lambda: len(archived(-60)) > 20, 30, "nothing archived")
    before = archived(-600)
    filler = _fill(small_fs, 1 * 2**20)  # below the 4 MiB kept free
    wait_for(lambda: "archiving is suspended" in node.log(), 30, "no error logged on low space:\n" + node.log())
    t_full = time.time()
    live = []
    client.subscribe("modbus_full", live.append)
    wait_for(lambda: len(live) >= 20, 30, "live publishing stopped while the disk was full")
    during = archived(-600)
    assert np.isin(before, during).all(), "history must stay readable while full"
    assert node.log().count("archiving is suspended") == 1, "the error is logged once"
    filler.unlink()
    wait_for(lambda: "archiving again" in node.log(), 30, "archiving did not resume:\n" + node.log())
    wait_for(
        lambda: len(archived(t_full)) and archived(t_full)[-1] > time.time() - 5, 30, "no new samples after resuming"
    )
    after = archived(-600)
    assert np.isin(before, after).all() and np.isin(during, after).all(), "archived data lost"
    gap = np.diff(after).max()
    files = sorted(p.name for p in archive.glob("*.h5"))
    print(
        f"\ndisk full: error logged once, {len(live)} live samples meanwhile, "
        f"{len(before)} -> {len(after)} archived samples kept, largest gap {gap:.1f} s "
        f"(not archived while full), files {files}"
    )
    assert len(files) >= 2, "resumed archiving writes a new file"
    assert node.alive()


def test_sink_low_space_injected(tmp_path, monkeypatch):
    """Without a small filesystem: injected low free space suspends and resumes the sink."""
    from sisock.servers.modbus.archiving import ThreadedArchiveSink
    from sisock.archive.reader import ArchiveReader
    from sisock.core.protocol import FieldSpec

    free = {"bytes": 10**12}
    monkeypatch.setattr(ThreadedArchiveSink, "free_bytes", lambda self: free["bytes"])
    sink = ThreadedArchiveSink(
        tmp_path / "a",
        {"g": {"x": FieldSpec(type="number")}},
        flush_interval=0.1,
        retry_interval=0.1,
        min_free_bytes=2**20,
    ).start()
    t0 = 1.7e9
    try:
        for i in range(10):
            sink("g", t0 + i + np.arange(10) / 10, {"x": np.ones(10)})
        wait_for(lambda: sink.appended == 100, 10, "first batches not archived")
        free["bytes"] = 2**19
        wait_for(lambda: sink.outages == 1, 10, "low space did not suspend archiving")
        for j in range(10):
            sink("g", t0 + 100 + j + np.arange(10) / 10, {"x": np.ones(10)})
        wait_for(lambda: sink.dropped >= 100, 10, "samples not dropped while low")
        free["bytes"] = 10**12
        for j in range(50):
            sink("g", t0 + 200 + j + np.arange(10) / 10, {"x": np.ones(10)})
            time.sleep(0.02)
        wait_for(lambda: sink.appended > 100, 10, "did not resume")
    finally:
        sink.close()
    with ArchiveReader(tmp_path / "a") as r:
        t = r.read(["x"], 0, 4e9)["timeline"]["g"]["t"]
    assert (t < t0 + 10).sum() == 100, "samples archived before the outage are all kept"
    assert (t >= t0 + 200).sum() > 0 and sink.outages == 1
    assert ((t >= t0 + 100) & (t < t0 + 110)).sum() == 0, "nothing written while suspended"


@pytest.mark.integration  # kills Modbus node processes
def test_kill9_modbus_node_trials(tmp_path):
    """kill -9 of the Modbus node mid-ingest, 3 trials (20 in the benchmark).

    Every file stays readable, loss <= one flush interval (0.5 s) plus one
    poll and scheduling slack, and ingest resumes in a new file each time.
    """
    trials = kill9_trials(tmp_path, 3)
    print(
        "\nkill -9 trials: loss", [f"{x['loss'] * 1000:.0f} ms" for x in trials], "files", [x["files"] for x in trials]
    )
    for x in trials:
        assert x["readable"] and x["monotonic"] and x["new_file"], x
        assert x["loss"] <= 0.5 + 0.1 + 1.0, x  # flush interval + poll + slack on a busy box
