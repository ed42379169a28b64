"""The Modbus poller against a real pymodbus TCP server on 127.0.0.1.

Covers outages (server stopped and restarted on the same port, device down
at start, exception responses, silent device), the sink contract, missed
polls, statistics and the shipped example configuration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from sisock.site.ports import free_port

from sisock.servers.modbus.config import load_config, parse_config
from sisock.servers.modbus.poller import Poller
from sisock.servers.modbus.simulator import Simulator, encode

pytestmark = pytest.mark.timeout(30)

EXAMPLE = Path(__file__).resolve().parent.parent / "servers" / "modbus" / "example.toml"
POLLER_LOG = "sisock.servers.modbus.poller"


def config(port: int, *, interval: float = 0.05, timeout: float = 0.5, groups=None, **device):
    """A node with one group 'g' (a float, a string, a coil) unless ``groups`` is given."""
    groups = groups or [
        {
            "name": "g",
            "interval": interval,
            "point": [
                {"name": "x", "kind": "input", "address": 0, "type": "float32"},
                {"name": "label", "kind": "input", "address": 2, "type": "string", "length": 2},
                {"name": "relay", "kind": "coil", "address": 0},
            ],
            "derived": [{"name": "x2", "expr": "2 * {x}"}],
        }
    ]
    return parse_config(
        {
            "node": {"name": "test_node"},
            "device": {"host": "127.0.0.1", "port": port, "timeout": timeout, **device},
            "group": groups,
        }
    )


def static_sim(port: int = 0, size: int = 64) -> Simulator:
    """A simulator with fixed values: x = 42.5, label 'ok', relay on."""
    sim = Simulator(port=port, signals=False, size=size)
    sim.set_registers("input", 0, encode("float32", 42.5))
    sim.set_registers("input", 2, encode("string", "ok", length=2))
    sim.set_bits("coil", 0, [True])
    return sim


class Recorder:
    """A sink keeping every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, dict]] = []

    def __call__(self, group: str, t: np.ndarray, values: dict) -> None:
        assert t.shape == (1,) and t.dtype == np.float64
        assert all(v.shape == (1,) for v in values.values())
        self.calls.append((group, float(t[0]), {k: v[0] for k, v in values.items()}))

    def good(self, group: str = "g") -> list:
        return [c for c in self.calls if c[0] == group and c[2][f"{group}_ok"]]

    def gaps(self, group: str = "g") -> list:
        return [c for c in self.calls if c[0] == group and not c[2][f"{group}_ok"]]


async def wait_for(pred, timeout: float, step: float = 0.01) -> bool:
    """Poll ``pred()`` until true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


def messages(caplog, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == POLLER_LOG and needle in r.getMessage()]


def test_outage_records_gaps_and_recovers(caplog):
    """Server stopped then restarted on the same port: gaps with timestamps, one log each way."""
    caplog.set_level(logging.INFO, logger=POLLER_LOG)
    rec = Recorder()
    sim = static_sim()

    async def main():
        await sim.start()
        poller = Poller(config(sim.port), rec)
        task = asyncio.create_task(poller.run())
        assert await wait_for(lambda: len(rec.good()) >= 5, 5)
        t_stop = time.time()
        await sim.stop()
        # about 1 s of outage at 20 Hz, minus the first reconnect attempts
        assert await wait_for(lambda: len(rec.gaps()) >= 10 or task.done(), 10), (
            "fewer than 10 gaps recorded while the device was down"
        )
        assert not task.done(), "poller exited while the device was down"
        t_start = time.time()
        await sim.start()
        n_good = len(rec.good())
        assert await wait_for(lambda: len(rec.good()) >= n_good + 5, 5)
        t_back = min(c[1] for c in rec.good()[n_good:])
        poller.stop()
        await asyncio.wait_for(task, 5)
        await sim.stop()
        return poller, t_stop, t_start, t_back

    poller, t_stop, t_start, t_back = asyncio.run(asyncio.wait_for(main(), 25))

    gaps = rec.gaps()
    for _g, t, v in gaps:
        assert t_stop - 0.1 <= t <= t_back
        assert np.isnan(v["x"]) and np.isnan(v["x2"])
        assert v["label"] == "" and v["relay"] is np.False_
    times = [c[1] for c in rec.calls]
    assert times == sorted(times)
    assert max(np.diff([c[1] for c in gaps])) < 0.2, "a poll during the outage was not recorded"
    # resumed: real values again, soon after the restart (backoff <= 1 s)
    assert t_back - t_start < 1.3
    for _g, t, v in rec.good():
        assert v["x"] == 42.5 and v["x2"] == 85.0 and v["label"] == "ok" and v["relay"]
    assert poller.stats["g"].gaps == len(gaps)
    down = messages(caplog, "recording gaps")
    up = messages(caplog, "answers again")
    assert len(down) == 1 and len(up) == 1, (down, up)
    assert f"127.0.0.1:{sim.port}" in down[0]
    assert "outage" in up[0] and f"{len(gaps)} poll(s)" in up[0]


def test_device_down_at_start_then_appears(caplog):
    """Polling a device that is not there yet gives gaps, then data once it listens."""
    caplog.set_level(logging.INFO, logger=POLLER_LOG)
    port = free_port()
    rec = Recorder()
    sim = static_sim(port)

    async def main():
        poller = Poller(config(port), rec)
        task = asyncio.create_task(poller.run())
        assert await wait_for(lambda: len(rec.gaps()) >= 5 or task.done(), 10), (
            "fewer than 5 gaps recorded while no device listened"
        )
        assert not task.done() and not rec.good()
        await sim.start()
        ok = await wait_for(lambda: len(rec.good()) >= 3, 3)
        poller.stop()
        await asyncio.wait_for(task, 5)
        await sim.stop()
        return ok

    assert asyncio.run(asyncio.wait_for(main(), 15))
    assert len(rec.gaps()) >= 5
    assert len(messages(caplog, "recording gaps")) == 1
    assert len(messages(caplog, "answers again")) == 1


def test_exception_response_is_a_gap_of_that_group_only(caplog):
    """An address the device refuses gives gaps in its group; other groups keep data."""
    caplog.set_level(logging.INFO, logger=POLLER_LOG)
    rec = Recorder()
    sim = static_sim(size=64)
    groups = [
        {"name": "good", "interval": 0.05, "point": [{"name": "x", "kind": "input", "address": 0, "type": "float32"}]},
        {
            "name": "bad",
            "interval": 0.05,
            "point": [{"name": "y", "kind": "holding", "address": 1000, "type": "uint16"}],
        },
    ]

    async def main():
        async with sim:
            poller = Poller(config(sim.port, groups=groups), rec)
            task = asyncio.create_task(poller.run())
            await wait_for(lambda: len(rec.good("good")) >= 5 and len(rec.gaps("bad")) >= 5 or task.done(), 10)
            poller.stop()
            await asyncio.wait_for(task, 5)

    asyncio.run(asyncio.wait_for(main(), 15))
    assert len(rec.good("good")) >= 5 and not rec.gaps("good")
    assert len(rec.gaps("bad")) >= 5 and not rec.good("bad")
    down = messages(caplog, "recording gaps")
    assert len(down) == 1
    assert "group 'bad'" in down[0] and "exception response" in down[0]


def test_silent_device_times_out_into_gaps(caplog):
    """A device that accepts connections but never answers yields timed-out gaps."""
    caplog.set_level(logging.INFO, logger=POLLER_LOG)
    rec = Recorder()

    async def swallow(reader, writer):
        while await reader.read(1024):
            pass
        writer.close()

    async def main():
        server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        poller = Poller(config(port, timeout=0.2), rec)
        task = asyncio.create_task(poller.run())
        await wait_for(lambda: len(rec.gaps()) >= 3 and poller.stats["g"].missed >= 1 or task.done(), 10)
        alive = not task.done()
        poller.stop()
        await asyncio.wait_for(task, 5)
        server.close()
        await server.wait_closed()
        return poller, alive

    poller, alive = asyncio.run(asyncio.wait_for(main(), 15))
    assert alive
    assert len(rec.gaps()) >= 3 and not rec.good()
    assert poller.stats["g"].missed >= 1  # 0.2 s timeouts overrun the 0.05 s ticks
    down = messages(caplog, "recording gaps")
    assert len(down) == 1 and "timeout" in down[0]


def test_slow_sink_counts_missed_polls_and_keeps_schedule():
    """Ticks passed while a poll (here: its sink) still runs are counted as missed."""
    calls: list[float] = []

    def slow_sink(group, t, values):
        calls.append(float(t[0]))
        time.sleep(0.12)  # longer than two 0.05 s intervals

    async def main():
        async with static_sim() as sim:
            poller = Poller(config(sim.port), slow_sink)
            task = asyncio.create_task(poller.run())
            await wait_for(lambda: len(calls) >= 4 or task.done(), 10)
            poller.stop()
            await asyncio.wait_for(task, 5)
            return poller

    poller = asyncio.run(asyncio.wait_for(main(), 15))
    st = poller.stats["g"]
    assert st.polls == len(calls) >= 4
    assert st.missed >= 2 * (st.polls - 1)
    assert st.gaps == 0


def test_sink_errors_are_logged_once_and_polling_continues(caplog):
    """A failing sink does not stop the poller; its failure is logged once."""
    caplog.set_level(logging.INFO, logger=POLLER_LOG)
    n = {"calls": 0}

    def flaky(group, t, values):
        n["calls"] += 1
        if n["calls"] <= 4:
            raise RuntimeError("disk full")

    async def main():
        async with static_sim() as sim:
            poller = Poller(config(sim.port), flaky)
            task = asyncio.create_task(poller.run())
            assert await wait_for(lambda: n["calls"] >= 8, 5)
            poller.stop()
            await asyncio.wait_for(task, 5)

    asyncio.run(asyncio.wait_for(main(), 15))
    assert len(messages(caplog, "sink failed")) == 1
    assert len(messages(caplog, "sink works again")) == 1


def test_clock_and_statistics():
    """Timestamps come from the injected clock; stats match what the server saw."""
    ticks = iter(np.arange(1000.0, 2000.0, 1.0))
    rec = Recorder()

    async def main():
        async with static_sim() as sim:
            poller = Poller(config(sim.port), rec, clock=lambda: next(ticks))
            task = asyncio.create_task(poller.run())
            assert await wait_for(lambda: len(rec.calls) >= 6, 5)
            poller.stop()
            await asyncio.wait_for(task, 5)
            return poller, sum(sim.request_count.values())

    poller, seen = asyncio.run(asyncio.wait_for(main(), 15))
    times = [c[1] for c in rec.calls]
    assert times == list(np.arange(1000.0, 1000.0 + len(times)))
    st = poller.stats["g"]
    assert st.polls == len(rec.calls) and st.gaps == 0
    assert st.requests == seen >= 2 * st.polls  # coil + input register read per poll
    assert 0 < st.latency_mean <= st.latency_p99 < 0.5
    summary = poller.summary()["g"]
    assert summary["polls"] == st.polls and summary["missed"] == st.missed


@pytest.mark.parametrize("connections", ["shared", "per_group"])
def test_example_config_against_simulator(connections):
    """The shipped example polls the simulator: plausible values in both groups."""
    rec = Recorder()

    async def main():
        async with Simulator(port=0) as sim:
            cfg = load_config(EXAMPLE)
            cfg = dataclasses.replace(
                cfg, device=dataclasses.replace(cfg.device, port=sim.port, connections=connections)
            )
            poller = Poller(cfg, rec)
            task = asyncio.create_task(poller.run())
            assert await wait_for(lambda: len(rec.good("fast")) >= 5 and len(rec.good("slow")) >= 1, 5)
            poller.stop()
            await asyncio.wait_for(task, 5)

    asyncio.run(asyncio.wait_for(main(), 15))
    assert not rec.gaps("fast") and not rec.gaps("slow")
    for _g, _t, v in rec.good("fast"):
        assert 285 < v["t_inlet"] < 300 and 285 < v["t_outlet"] < 305
        assert 3.9 < v["t_stage"] < 4.1
        assert 1400 < v["p_in"] < 1600 and v["dp"] == pytest.approx(v["p_in"] - v["p_out"])
        assert 110 < v["dp"] < 130
        assert 10 < v["flow"] < 14  # little word order decoded right
    slow = rec.good("slow")[0][2]
    assert slow["model"] == "SIMOD-01"
    assert slow["running"] and slow["pump_on"] and slow["door_closed"] and slow["flow_ok"]
    assert slow["setpoint"] == pytest.approx(295.5)
    assert slow["status"] in (1.0, 3.0, 5.0, 7.0)
    assert slow["energy"] > 0
