"""The Modbus data node end to end: real pymodbus simulator, real router, real archive."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from conftest import free_port, listed, wait_for, wait_port
from sisock.archive.reader import ArchiveReader
from sisock.servers.modbus.server import example_config

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def instrument(stack, procs, tmp_path):
    """A simulator process, a config pointing at it, and a function starting the node."""
    port = free_port()
    sim = procs("sim", "sim", "modbus", "--port", str(port))
    wait_port(port, 20, sim.proc)
    cfg = tmp_path / "node.toml"
    cfg.write_text(example_config(port))
    archive = tmp_path / "archive"

    def start_node():
        return procs("modbus", "serve", "modbus", "--config", str(cfg), "--archive", str(archive))

    return {"port": port, "sim": sim, "config": cfg, "archive": archive, "start_node": start_node}


def fast_times(archive, start=0.0, end=4e9):
    """The 10 Hz group as archived in ``[start, end)``.

    Each call opens its own reader and closes it before returning, so no
    HDF5 handle of this process stays open on the files the node writes.

    Parameters
    ----------
    archive : pathlib.Path
        The node's archive directory.
    start, end : float
        Time range (Unix seconds).

    Returns
    -------
    t : numpy.ndarray
        Sample times (empty when nothing is archived yet).
    ok : numpy.ndarray
        The ``fast_ok`` flag of each sample (False for a gap).
    t_inlet : numpy.ndarray
        The ``t_inlet`` value of each sample (NaN for a gap).
    """
    with ArchiveReader(archive) as reader:
        r = reader.read(["fast_ok", "t_inlet"], start, end)
    tl = r["timeline"].get("fast")
    return (tl["t"] if tl else np.empty(0)), r["data"]["fast_ok"], r["data"]["t_inlet"]


def archived_ok(archive, start=0.0) -> int:
    """Number of good (not gap) 10 Hz samples archived since ``start``.

    Parameters
    ----------
    archive : pathlib.Path
        The node's archive directory.
    start : float
        Count samples from this time (Unix seconds).

    Returns
    -------
    int
        Samples with ``fast_ok`` set.
    """
    _, ok, _ = fast_times(archive, start)
    return int(np.count_nonzero(ok))


def test_live_and_history(instrument, client):
    """The node is listed, publishes each poll live, and serves its archive with min_stride."""
    instrument["start_node"]()
    wait_for(lambda: "modbus_sim" in listed(client), 20, "modbus node never listed")
    got = []
    client.subscribe("modbus_sim", got.append)
    wait_for(
        lambda: sum("fast" in g.timelines for g in list(got)) >= 8, 30, "fewer than 8 live polls of the 10 Hz group"
    )
    fast = [g for g in list(got) if "fast" in g.timelines]
    assert {"t_inlet", "fast_ok"} <= set(fast[-1].data)
    assert 250 < fast[-1].data["t_inlet"][0] < 350
    # the 1 Hz group is published too, on its own timeline
    wait_for(lambda: any("slow" in g.timelines for g in list(got)), 30, "no live poll of the 1 Hz group")

    def history():
        r = client.get_data("modbus_sim", ["t_inlet", "status", "model"], -30, 0)
        return r if "fast" in r.timelines and len(r.timelines["fast"].t) >= 15 else None

    r = wait_for(history, 30, "fewer than 15 samples archived")
    assert r.data["t_inlet"].dtype == np.float64
    assert r.data["model"].dtype == object and len(r.data["model"]) == len(r.timelines["slow"].t)
    d = client.get_data("modbus_sim", ["t_inlet"], -30, 0, min_stride=1.0)
    assert np.all(np.diff(d.timelines["fast"].t) >= 1.0)


def test_device_outage_recorded_as_gap(instrument, client):
    """Device down for a while: node stays up, gap archived, polling resumes."""
    node = instrument["start_node"]()
    archive = instrument["archive"]
    wait_for(lambda: "modbus_sim" in listed(client), 20, "modbus node never listed")
    wait_for(lambda: archived_ok(archive) >= 5, 30, "nothing archived before the outage")
    instrument["sim"].kill()
    t_down = time.time()

    def gaps_archived() -> int:
        t, ok, _ = fast_times(archive, t_down + 0.3)
        return int(np.count_nonzero(~ok))

    # the device stays down until at least 3 polls were archived as gaps
    wait_for(lambda: gaps_archived() >= 3, 30, "no gap archived while the device was down:\n" + node.log())
    t_gaps = time.time()  # every gap counted above was polled before this
    sim2 = (
        instrument["sim"]
        .__class__(instrument["sim"].name + "-again", instrument["sim"].args, instrument["sim"].log_path.parent)
        .start()
    )
    try:
        wait_port(instrument["port"], 20, sim2.proc)
        t_up = time.time()
        wait_for(lambda: (fast_times(archive)[0] > t_up + 1.0).sum() >= 5, 30, "polling did not resume")
        assert node.alive(), node.log()
        t, ok, temp = fast_times(archive)
        during = (t > t_down + 0.3) & (t < t_gaps)
        after = t > t_up + 1.0
        assert during.sum() >= 3, "polls during the outage must be archived as gaps"
        assert not ok[during].any() and np.isnan(temp[during]).all()
        assert ok[after].all(), "polling did not resume"
        log = node.log()
        assert log.count("lost") + log.count("outage") + log.count("unreachable") >= 1
    finally:
        sim2.stop()


def test_router_restart_loses_no_samples(stack, instrument, client):
    """While the router restarts, the node keeps polling and archiving every sample."""
    archive = instrument["archive"]
    instrument["start_node"]()
    wait_for(lambda: "modbus_sim" in listed(client), 20, "modbus node never listed")
    t_start = time.time()
    # at least 1.5 s archived before the restart, so the range checked below starts with data
    wait_for(lambda: archived_ok(archive, t_start) >= 15, 30, "nothing archived before the restart")
    t0 = time.time()
    stack.restart_router()
    from sisock.client import connect

    with connect() as c:
        wait_for(lambda: "modbus_sim" in listed(c), 30, "node not back after router restart")
    t1 = time.time()
    wait_for(lambda: archived_ok(archive, t1) >= 5, 30, "nothing archived after the restart")
    # from before the restart to past the node's return: a pause anywhere shows as a gap
    t, ok, _ = fast_times(archive, t0 - 1)
    assert t[0] < t0 - 0.5 and t[-1] > t1, (t[0] - t0, t[-1] - t1)
    assert ok.all()
    assert np.all(np.diff(t) > 0), "archived times must be strictly increasing"
    gaps = np.diff(t)
    print(f"\nrouter restart: {len(t)} samples over {t[-1] - t[0]:.1f} s, largest gap {gaps.max() * 1000:.0f} ms")
    # the router was away for seconds: polling that stopped meanwhile would leave a gap that
    # long; a late poll on a busy machine is not a lost one (tight figures: bench_modbus.py)
    assert gaps.max() < 2.0, "polling stopped during the router restart"


def test_kill9_loses_at_most_a_second(instrument, client):
    """kill -9 during polling: archive readable, loss <= 1 s, restart writes a new file."""
    node = instrument["start_node"]()
    wait_for(lambda: "modbus_sim" in listed(client), 20, "modbus node never listed")
    wait_for(lambda: archived_ok(instrument["archive"]) > 15, 30, "fewer than 16 samples archived")
    files_before = {p.name.split(".")[0] for p in instrument["archive"].glob("*.h5")}
    node.stop(signal.SIGKILL)
    t_kill = time.time()
    t, ok, _ = fast_times(instrument["archive"])
    loss = t_kill - t[-1]
    print(f"\nkill -9: last archived sample {loss * 1000:.0f} ms before the kill")
    # flush interval 0.5 s; slack for a busy machine (20 trials: benchmarks/bench_faults.py)
    assert len(t) > 15 and loss <= 2.0
    node2 = instrument["start_node"]()
    wait_for(lambda: "modbus_sim" in listed(client), 30, "restarted node never listed")
    wait_for(lambda: fast_times(instrument["archive"])[0][-1] > t_kill + 0.5, 30, "ingest did not resume")
    files_after = {p.name.split(".")[0] for p in instrument["archive"].glob("*.h5")}
    assert files_before < files_after, "the crashed file must stay and a new one start"
    t2, ok2, _ = fast_times(instrument["archive"])
    assert np.all(np.diff(t2) > 0)
    assert node2.alive()


def test_config_error_before_connecting(stack, procs, tmp_path):
    """A bad config exits with a message naming the point, without connecting."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text(example_config(1).replace('type = "float32"', 'type = "float33"', 1))
    p = procs("modbus-bad", "serve", "modbus", "--config", str(cfg))
    wait_for(lambda: not p.alive(), 20, "bad config did not stop the node")
    assert p.proc.returncode == 2
    assert "t_inlet" in p.log() and "float33" in p.log()
    assert "Traceback" not in p.log()
