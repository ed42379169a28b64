"""Several data nodes in one ``sisock serve`` process, and faults kept inside their node.

Unit tests check the command lines and configuration files that declare
several nodes. Integration tests run real processes on the session's
router: archives and Modbus devices (the pymodbus simulator, a device that
is down, a device whose replies are unusable) served from one process,
where one node failing leaves the others answering and archiving.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, free_port, listed, wait_for, wait_port
from sisock.archive.reader import ArchiveReader
from sisock.core.errors import BadArgument
from sisock.servers import hdf5_archive
from sisock.servers.modbus.config import ConfigError, load_config, load_nodes, parse_nodes
from sisock.servers.modbus.server import configs, example_config

pytestmark = pytest.mark.timeout(240)

EXAMPLE = REPO / "servers" / "modbus" / "example.toml"


# ----------------------------------------------------------------- command lines


def _hdf5_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    hdf5_archive.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.unit
def test_hdf5_names_pair_with_archives(tmp_path):
    """The i-th --name names the i-th --archive; one archive keeps the old defaults."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert hdf5_archive.nodes(_hdf5_args(["--archive", str(a)])) == [("archive", a, None)]
    assert hdf5_archive.nodes(_hdf5_args(["--name", "x", "--archive", str(a)])) == [("x", a, None)]
    args = _hdf5_args(
        [
            "--archive",
            str(a),
            "--name",
            "n1",
            "--archive",
            str(b),
            "--name",
            "n2",
            "--description",
            "first",
            "--description",
            "second",
        ]
    )
    assert hdf5_archive.nodes(args) == [("n1", a, "first"), ("n2", b, "second")]


@pytest.mark.unit
@pytest.mark.parametrize(
    "argv, words",
    [
        (["--archive", "A", "--archive", "B", "--name", "n1"], ["--name", "2 times", "1 times"]),
        (["--archive", "A", "--name", "n", "--archive", "B", "--name", "n"], ["--name", "'n'", "twice"]),
        (["--archive", "A", "--name", "n1", "--archive", "A", "--name", "n2"], ["--archive", "twice"]),
        (
            ["--archive", "A", "--name", "n1", "--archive", "B", "--name", "n2", "--description", "d"],
            ["--description", "1 times"],
        ),
        (["--archive", "missing"], ["--archive", "not a directory"]),
    ],
)
def test_hdf5_bad_arguments_named(tmp_path, argv, words):
    """Names and archives that do not pair up are refused with the argument named."""
    for d in ("A", "B"):
        (tmp_path / d).mkdir()
    argv = [str(tmp_path / a) if a in ("A", "B", "missing") else a for a in argv]
    with pytest.raises(BadArgument) as err:
        hdf5_archive.nodes(_hdf5_args(argv))
    for word in words:
        assert word in str(err.value)


DEVICES = """
[[device]]
name = "cryo_a"
description = "first cryostat"
include = "example.toml"
port = 6001
archive = "archives/a"

[[device]]
name = "pump_b"
host = "10.0.0.7"
port = 6002
timeout = 0.25

  [[device.group]]
  name = "slow"
  interval = 1.0

    [[device.group.point]]
    name = "pressure"
    kind = "input"
    address = 3
    units = "mbar"
"""


@pytest.mark.unit
def test_devices_file(tmp_path):
    """[[device]] tables: each its own node; include starts from a one-device file."""
    (tmp_path / "example.toml").write_text(EXAMPLE.read_text())
    (tmp_path / "devices.toml").write_text(DEVICES)
    a, b = load_nodes(tmp_path / "devices.toml")
    single = load_config(EXAMPLE)
    assert (a.name, a.description, a.device.port, a.device.host) == (
        "cryo_a",
        "first cryostat",
        6001,
        single.device.host,
    )
    assert a.groups == single.groups and a.writes == single.writes
    assert a.archive == tmp_path / "archives" / "a"
    assert (b.name, b.device.host, b.device.port, b.device.timeout) == ("pump_b", "10.0.0.7", 6002, 0.25)
    assert [g.name for g in b.groups] == ["slow"] and b.writes is None and b.archive is None


@pytest.mark.unit
def test_shipped_devices_file():
    """servers/modbus/devices.toml reads: two devices; own groups drop the included writes."""
    a, b = load_nodes(REPO / "servers" / "modbus" / "devices.toml")
    assert (a.name, a.device.port, b.name, b.device.port) == ("cryostat_a", 5020, "cryostat_b", 5021)
    assert [g.name for g in b.groups] == ["slow"] and list(b.writes.points) == ["setpoint"]


@pytest.mark.unit
def test_one_device_file_unchanged():
    """A one-device file reads as before: one node, the same configuration."""
    assert load_nodes(EXAMPLE) == [load_config(EXAMPLE)]


@pytest.mark.unit
@pytest.mark.parametrize(
    "text, words",
    [
        (
            '[[device]]\nname = "a"\ninclude = "example.toml"\n[[device]]\nname = "a"\ninclude = "example.toml"\n',
            ["device #2 ('a')", "also device #1"],
        ),
        ('[node]\nname = "x"\n[[device]]\nname = "a"\ninclude = "example.toml"\n', ["'node'", "[[device]]"]),
        (
            '[[device]]\nname = "a"\ninclude = "example.toml"\narchive = "d"\n'
            '[[device]]\nname = "b"\ninclude = "example.toml"\narchive = "d"\n',
            ["device 'b'", "archive directory", "also device 'a'"],
        ),
        ('[[device]]\ninclude = "example.toml"\n', ["device #1", "name"]),
        ('[[device]]\nname = "a"\ninclude = "example.toml"\nprot = 1\n', ["device #1 ('a')", "'prot'"]),
        ('[[device]]\nname = "a"\ninclude = "nowhere.toml"\n', ["device #1 ('a')", "nowhere.toml"]),
        (
            '[[device]]\nname = "a"\ninclude = "example.toml"\n[[device.group]]\nname = "g"\n'
            'interval = 0\n[[device.group.point]]\nname = "p"\nkind = "input"\naddress = 0\n',
            ["device #1 ('a')", "group 'g'", "interval"],
        ),
    ],
)
def test_devices_file_errors_named(tmp_path, text, words):
    """A bad [[device]] table is refused naming the device and the key."""
    (tmp_path / "example.toml").write_text(EXAMPLE.read_text())
    path = tmp_path / "devices.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_nodes(path)
    for word in words:
        assert word in str(err.value)


@pytest.mark.unit
def test_archive_flag_is_for_one_device(tmp_path):
    """--archive names one directory: refused when the files declare several devices,
    and a name declared in two files is refused too."""
    (tmp_path / "example.toml").write_text(EXAMPLE.read_text())
    (tmp_path / "devices.toml").write_text(DEVICES)
    args = argparse.Namespace(config=[tmp_path / "devices.toml"], archive=tmp_path / "x")
    with pytest.raises(ConfigError, match="--archive"):
        configs(args)
    args = argparse.Namespace(config=[tmp_path / "devices.toml", tmp_path / "devices.toml"], archive=None)
    with pytest.raises(ConfigError, match="'cryo_a' is also declared"):
        configs(args)
    one = argparse.Namespace(config=[EXAMPLE], archive=tmp_path / "x")
    assert [c.name for c in configs(one)] == ["modbus_sim"]


@pytest.mark.unit
def test_parse_nodes_single_table():
    """parse_nodes on a one-device dict gives that one node."""
    data = {
        "node": {"name": "n"},
        "device": {"port": 1},
        "group": [{"name": "g", "interval": 1.0, "point": [{"name": "p", "kind": "input", "address": 0}]}],
    }
    (node,) = parse_nodes(data)
    assert node.name == "n" and node.device.port == 1


# ----------------------------------------------------------------- unusable replies


class EmptyReplies:
    """A Modbus TCP server answering every request with a reply that holds no data.

    Well framed (the client accepts it), unusable (a coil read of 8 bits
    gets 0 bits). Runs its own asyncio loop in a thread.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.requests = 0
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, reader, writer) -> None:
        try:
            while True:
                tid, _, length, uid = struct.unpack(">HHHB", await reader.readexactly(7))
                fc = (await reader.readexactly(length - 1))[0]
                self.requests += 1
                body = bytes([fc, 0])  # byte count 0
                writer.write(struct.pack(">HHHB", tid, 0, len(body) + 1, uid) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self.loop.run_forever()

    def __enter__(self) -> "EmptyReplies":
        self.thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


BAD_DEVICE = """
[[device]]
name = "{name}"
port = {port}
timeout = 0.3
archive = "{archive}"

  [[device.group]]
  name = "coils"
  interval = 0.1

    [[device.group.point]]
    name = "c0"
    kind = "coil"
    address = 0

    [[device.group.point]]
    name = "c7"
    kind = "coil"
    address = 7
"""


@pytest.mark.integration
def test_poller_goes_on_after_unusable_reply():
    """A reply the decoder cannot use (0 bits for an 8-bit read) is a gap; polling goes on."""
    from sisock.servers.modbus.poller import Poller

    with EmptyReplies() as device:
        data = {
            "node": {"name": "bad"},
            "device": {"port": device.port, "timeout": 0.3},
            "group": [
                {
                    "name": "g",
                    "interval": 0.05,
                    "point": [
                        {"name": "c0", "kind": "coil", "address": 0},
                        {"name": "c7", "kind": "coil", "address": 7},
                    ],
                }
            ],
        }
        (config,) = parse_nodes(data)
        got: list[bool] = []

        async def main() -> None:
            poller = Poller(config, lambda g, t, v: got.append(bool(v["g_ok"][0])))
            task = asyncio.ensure_future(poller.run())
            deadline = time.monotonic() + 30
            while len(got) < 5 and time.monotonic() < deadline and not task.done():
                await asyncio.sleep(0.05)
            poller.stop()
            await task

        asyncio.run(main())
    assert len(got) >= 5, "polling stopped after an unusable reply"
    assert not any(got), "an unusable reply must be recorded as a gap"


# ----------------------------------------------------------------- archives


def _archive(root: Path, name: str) -> Path:
    d = root / name
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sisock",
            "generate",
            str(d),
            "--days",
            "0.25",
            "--fast-hours",
            "0.05",
            "--burst-rate",
            "0",
            "--seed",
            str(len(name)),
        ],
        check=True,
        cwd=str(REPO),
        capture_output=True,
    )
    return d


def test_archives_in_one_process_fault_kept_apart(stack, procs, client, tmp_path):
    """Three archives served by one process; one whose storage is gone fails only its own calls."""
    from sisock.client import ClientError

    dirs = [_archive(tmp_path, n) for n in ("mn_a", "mn_b", "mn_c")]
    node = procs(
        "archives",
        "serve",
        "hdf5",
        "--archive",
        str(dirs[0]),
        "--name",
        "mn_a",
        "--archive",
        str(dirs[1]),
        "--name",
        "mn_b",
        "--archive",
        str(dirs[2]),
        "--name",
        "mn_c",
    )
    names = {"mn_a", "mn_b", "mn_c"}
    wait_for(lambda: names <= listed(client), 60, "nodes never listed:\n" + node.log())

    def answers(name: str) -> int:
        r = client.get_data(name, ["stage_temp"], -86400 * 2, 0, min_stride=60)
        return len(r.data["stage_temp"])

    assert answers("mn_a") > 0 and answers("mn_b") > 0 and answers("mn_c") > 0
    shutil.rmtree(dirs[1])  # mn_b's storage goes away: its core raises on every call
    dirs[1].write_text("not a directory")
    for _ in range(3):
        with pytest.raises(ClientError) as err:
            client.get_data("mn_b", ["stage_temp"], -86400 * 2, 0, min_stride=60)
        assert "mn_b" in str(err.value) or "internal" in str(err.value)
        assert answers("mn_a") > 0 and answers("mn_c") > 0
    assert node.alive(), node.log()
    assert names <= listed(client)


def test_hung_core_holds_only_its_own_threads(stack, procs, client):
    """Calls stuck in one node's core (more than a thread pool holds) leave a
    node of the same process answering."""
    from slow_node import STARTED
    from sisock.client import ClientError, connect

    env = {**__import__("os").environ, "SLOW_SECONDS": "120", "PYTHONPATH": str(REPO / "tests")}
    node = procs(
        "two", sys.executable, str(REPO / "tests" / "two_nodes.py"), "mn_slow", "mn_quick", module=None, env=env
    )
    wait_for(lambda: {"mn_slow", "mn_quick"} <= listed(client), 30, "nodes never listed:\n" + node.log())

    def stuck_call() -> None:
        try:
            with connect(timeout=150) as c:
                c.call("consumer.mn_slow.get_data", ["x"], -10, 0, timeout=150)
        except ClientError:
            pass

    for _ in range(12):  # more than any one pool (8 per node; Twisted's shared pool is 10)
        threading.Thread(target=stuck_call, daemon=True).start()
    wait_for(lambda: node.log().count(STARTED) >= 8, 60, "the slow calls never reached the node:\n" + node.log())
    with connect(timeout=20) as c:
        r = c.get_data("mn_quick", ["x"], -10, 0)
    assert list(r.data["x"]) == [0.0, 1.0, 2.0]
    assert node.alive()
    node.kill()  # its worker threads sleep on


# ----------------------------------------------------------------- Modbus devices


def _samples(archive: Path, timeline: str, field: str, since: float) -> tuple[int, int]:
    """(samples, good samples) of ``field``'s ok flag on ``timeline`` archived since ``since``."""
    if not archive.exists():
        return 0, 0
    with ArchiveReader(archive) as reader:
        r = reader.read([field], since, 4e9)
    tl = r["timeline"].get(timeline)
    if not tl:
        return 0, 0
    ok = r["data"][field]
    return len(tl["t"]), int(np.count_nonzero(ok))


def test_modbus_devices_in_one_process_fault_kept_apart(stack, procs, client, tmp_path):
    """One process polls three devices: a working simulator, a device that is down and a
    device whose replies are unusable. The working one keeps answering and archiving;
    the other two keep recording gaps and answering from their archives."""
    port = free_port()
    sim = procs("sim", "sim", "modbus", "--port", str(port))
    wait_port(port, 20, sim.proc)
    down_port = free_port()  # nothing listens there
    (tmp_path / "good.toml").write_text(example_config(port))
    arch = {n: tmp_path / "archives" / n for n in ("mn_good", "mn_down", "mn_bad")}
    with EmptyReplies() as bad:
        text = (
            f'[[device]]\nname = "mn_good"\ninclude = "good.toml"\n'
            f'archive = "{arch["mn_good"]}"\n\n'
            f'[[device]]\nname = "mn_down"\ninclude = "good.toml"\nport = {down_port}\n'
            f'timeout = 0.3\narchive = "{arch["mn_down"]}"\n'
            + BAD_DEVICE.format(name="mn_bad", port=bad.port, archive=arch["mn_bad"])
        )
        cfg = tmp_path / "devices.toml"
        cfg.write_text(text)
        node = procs("devices", "serve", "modbus", "--config", str(cfg))
        names = {"mn_good", "mn_down", "mn_bad"}
        wait_for(lambda: names <= listed(client), 60, "devices never listed:\n" + node.log())
        t0 = time.time()
        wait_for(
            lambda: _samples(arch["mn_good"], "fast", "fast_ok", t0)[1] >= 20,
            60,
            "the working device archived too little:\n" + node.log(),
        )
        wait_for(
            lambda: _samples(arch["mn_down"], "fast", "fast_ok", t0)[0] >= 5,
            60,
            "the device that is down recorded no gaps:\n" + node.log(),
        )
        wait_for(
            lambda: _samples(arch["mn_bad"], "coils", "coils_ok", t0)[0] >= 5,
            60,
            "the device with unusable replies stopped polling:\n" + node.log(),
        )
        assert _samples(arch["mn_down"], "fast", "fast_ok", t0)[1] == 0
        assert _samples(arch["mn_bad"], "coils", "coils_ok", t0)[1] == 0
        # later on, the working device still archives and answers through the router
        t1 = time.time()
        wait_for(
            lambda: _samples(arch["mn_good"], "fast", "fast_ok", t1)[1] >= 10,
            60,
            "the working device stopped archiving:\n" + node.log(),
        )

        def answered() -> bool:
            r = client.get_data("mn_good", ["t_inlet"], -5, 0)
            return len(r.data["t_inlet"]) > 0 and bool(np.isfinite(r.data["t_inlet"]).any())

        wait_for(answered, 30, "the working device's node did not answer")
        for name in ("mn_down", "mn_bad"):
            field, _ = client.fields(name, -60, 0)
            assert field, f"{name} answered get_fields with nothing"
        assert node.alive(), node.log()
        assert names <= listed(client)


def test_simulator_serves_several_devices(stack, procs):
    """``sisock sim modbus --devices 3`` answers on three consecutive ports, each its own device."""
    from sisock.servers.modbus.poller import Poller

    base = free_port()
    ports = [base, base + 1, base + 2]
    sim = procs("sims", "sim", "modbus", "--port", str(base), "--devices", "3")
    for port in ports:
        wait_port(port, 30, sim.proc)

    got: dict[int, list[float]] = {}

    async def poll(port: int) -> None:
        (config,) = parse_nodes(tomllib_loads(example_config(port)))
        values: list[float] = []
        poller = Poller(
            config, lambda g, t, v: values.append(float(v["t_inlet"][0])) if g == "fast" and v["fast_ok"][0] else None
        )
        task = asyncio.ensure_future(poller.run())
        deadline = time.monotonic() + 30
        while len(values) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        poller.stop()
        await task
        got[port] = values

    async def main() -> None:
        await asyncio.gather(*(poll(p) for p in ports))

    asyncio.run(main())
    assert all(len(got[p]) >= 3 for p in ports), got
    assert len({round(got[p][-1], 6) for p in ports}) == 3, "devices share their signals"


def tomllib_loads(text: str) -> dict:
    """Parse TOML text."""
    import tomllib

    return tomllib.loads(text)
