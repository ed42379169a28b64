"""Operator writes end to end: real router, real Modbus node, a real pymodbus device.

The device is :class:`sisock.servers.modbus.simulator.Simulator` (a pymodbus
``ModbusTcpServer``) running in this process, so the test counts every
write request it receives and sees every request in arrival order. The node
runs as ``sisock serve modbus`` in its own process.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import time
import uuid

import pytest

from conftest import free_port, wait_for
from sisock.site import accounts
from sisock.writes.audit import AuditLog
from sisock.servers.modbus.simulator import Simulator, encode

pytestmark = pytest.mark.timeout(300)

NODE = "wmb"


def node_config(port: int, name: str, audit: str) -> str:
    """A Modbus node with one 10 Hz group and every kind of writable point."""
    return f'''
[node]
name = "{name}"
description = "operator-write test node"

[device]
host = "127.0.0.1"
port = {port}
timeout = 0.5
retries = 3              # the poller's; a write is still sent once

[writes]
rate = 1000.0
burst = 1000
audit = "{audit}"

[[group]]
name = "fast"
interval = 0.1

[[group.point]]
name = "t_outlet"
kind = "input"
address = 2
type = "float32"

[[group.point]]
name = "setpoint"
kind = "holding"
address = 1
type = "int16"
scale = 0.1
units = "K"

[[group.point]]
name = "mode"
kind = "holding"
address = 10
type = "uint16"

[[group.point]]
name = "limited"
kind = "holding"
address = 12
type = "uint16"

[[group.point]]
name = "bad_rb"
kind = "holding"
address = 14
type = "int16"

[[group.point]]
name = "rb_other"
kind = "holding"
address = 15
type = "int16"

[[group.point]]
name = "count16"
kind = "holding"
address = 16
type = "uint16"

[[group.point]]
name = "slow_rb"
kind = "holding"
address = 18
type = "int16"

[[group.point]]
name = "gain"
kind = "holding"
address = 20
type = "float32"
word_order = "little"

[[group]]
name = "slow"
interval = 1.0

[[group.point]]
name = "pump_on"
kind = "coil"
address = 1

[[write]]
point = "setpoint"
min = 280.0
max = 320.0
max_step = 10.0
readback = "setpoint"
tolerance = 0.05
settle = 0.05

[[write]]
point = "mode"
allowed = [1, 2, 3]

[[write]]
point = "limited"
min_interval = 60.0

[[write]]
point = "bad_rb"
readback = "rb_other"

[[write]]
point = "count16"

[[write]]
point = "slow_rb"
settle = 30.0

[[write]]
point = "gain"
min = -100.0
max = 100.0
tolerance = 0.001

[[write]]
point = "pump_on"
'''


class Device:
    """A pymodbus simulator (and an optional reply-dropping proxy) on a background loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sim = Simulator(port=free_port(), signals=False)
        self.sim.set_registers("holding", 1, encode("int16", 2955))
        self.sim.set_bits("coil", 1, [True])
        self.run(self.sim.start())
        self.drop_write_replies = False
        self.dropped = 0
        self.proxy_port = 0
        self._proxy = None

    def run(self, coro, timeout: float = 30.0):
        """Run ``coro`` on the device loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def writes(self) -> int:
        """Write requests the device received so far."""
        return self.sim.writes

    def start_proxy(self) -> int:
        """A TCP proxy to the device that can drop the device's answers to writes."""

        async def handle(reader, writer):
            r2, w2 = await asyncio.open_connection("127.0.0.1", self.sim.port)

            async def up():
                while data := await reader.read(65536):
                    w2.write(data)
                    await w2.drain()
                w2.close()

            async def down():
                buf = b""
                while data := await r2.read(65536):
                    buf += data
                    while len(buf) >= 8:
                        total = 6 + int.from_bytes(buf[4:6], "big")
                        if len(buf) < total:
                            break
                        frame, buf = buf[:total], buf[total:]
                        if self.drop_write_replies and (frame[7] & 0x7F) in (5, 6, 15, 16):
                            self.dropped += 1
                            continue
                        writer.write(frame)
                    await writer.drain()
                writer.close()

            await asyncio.gather(up(), down(), return_exceptions=True)

        async def start():
            self._proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
            return self._proxy.sockets[0].getsockname()[1]

        self.proxy_port = self.run(start())
        return self.proxy_port

    def close(self) -> None:
        """Stop the device, the proxy and the loop."""
        if self._proxy is not None:
            self._proxy.close()
        self.run(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def operator(stack):
    """An operator account ``alice`` (router restarted to load it): ``(user, secret)``."""
    secret = accounts.add(stack.home, "alice", "operator")
    stack.restart_router()
    from sisock.client import ClientError, connect

    def up():
        try:
            with connect(user="alice", secret=secret, timeout=3) as c:
                c.nodes()
            return True
        except ClientError:
            return False

    wait_for(up, 30, "router/hub not back after adding the operator account")
    return "alice", secret


@pytest.fixture(scope="module")
def device():
    """The simulated device."""
    d = Device()
    yield d
    d.close()


@pytest.fixture(scope="module")
def node(stack, operator, device, tmp_path_factory):
    """The Modbus node ``wmb`` on the device: ``{"proc", "audit", "config", "start"}``."""
    tmp = tmp_path_factory.mktemp("wmb")
    audit = tmp / "audit.sqlite"
    cfg = tmp / "wmb.toml"
    cfg.write_text(node_config(device.sim.port, NODE, str(audit)))
    procs = []

    def start():
        p = stack.start("wmb", "serve", "modbus", "--config", str(cfg), "--archive", str(tmp / "archive"))
        procs.append(p)
        return p

    info = {"proc": start(), "audit": audit, "config": cfg, "start": start, "procs": procs}
    from sisock.client import connect

    with connect(user=operator[0], secret=operator[1]) as c:
        wait_for(lambda: _points(c, NODE), 60, f"node never offered writes:\n{info['proc'].log()}")
    yield info
    for p in procs:
        p.stop()


def _points(c, node):
    from sisock.client import ClientError

    try:
        return c.points(node)
    except ClientError:
        return None


@pytest.fixture
def op(operator, node):
    """A client signed in as the operator."""
    from sisock.client import connect

    with connect(user=operator[0], secret=operator[1], timeout=30) as c:
        yield c


def audit_of(node, request_id):
    """The audit rows of ``request_id`` read straight from the node's database."""
    rows = AuditLog(node["audit"], readonly=True).query(0, 4e9)
    return [r for r in rows if r["request_id"] == request_id]


def test_points_happy_path_with_readback(op, node, device, client):
    """A write is applied and read back, audited with the disclosed caller, sent once,
    and served as the node's ``operator_writes`` timeline."""
    pts = op.points(NODE)
    assert pts["setpoint"]["min"] == 280.0 and pts["setpoint"]["max_step"] == 10.0
    assert pts["setpoint"]["readback"]["point"] == "setpoint" and pts["setpoint"]["units"] == "K"
    assert "t_outlet" not in pts
    before = device.writes
    out = op.set(NODE, "setpoint", 297.5, reason="happy path")
    assert out["status"] == "applied", out
    assert out["old"] == pytest.approx(295.5) and out["readback"] == pytest.approx(297.5)
    assert device.writes == before + 1
    assert device.sim.registers["holding"][1] == 2975
    rec = audit_of(node, out["request_id"])
    assert len(rec) == 1 and rec[0]["status"] == "applied"
    assert rec[0]["caller_authid"] == "alice" and rec[0]["caller_role"] == "operator"
    assert rec[0]["reason"] == "happy path"
    assert any(r["request_id"] == out["request_id"] for r in op.audit(NODE, -600, 0))
    # a float32 in little word order and a coil
    assert op.set(NODE, "gain", -12.25)["status"] == "applied"
    assert op.set(NODE, "pump_on", False)["status"] == "applied"
    assert not device.sim.bits["coil"][1]
    # the writes as a timeline of the node (consumer role)
    r = client.get_data(NODE, ["write_point", "write_value", "write_caller"], -600, 0)
    assert "setpoint" in list(r.data["write_point"]) and "alice" in list(r.data["write_caller"])
    fields, timelines = client.fields(NODE, -600, 0)
    assert fields["write_point"]["timeline"] == "operator_writes"


def test_consumer_refused_by_router(client, node, device):
    """A consumer calling ``operator.*`` is refused by the router; nothing is written."""
    from sisock.client import NotAuthorized

    before = device.writes
    rows_before = len(AuditLog(node["audit"], readonly=True).query(0, 4e9))
    with pytest.raises(NotAuthorized) as info:
        client.set(NODE, "setpoint", 296.0)
    assert info.value.uri == "wamp.error.not_authorized"
    with pytest.raises(NotAuthorized):
        client.points(NODE)
    assert device.writes == before
    # the router refused: the call never reached the node
    assert len(AuditLog(node["audit"], readonly=True).query(0, 4e9)) == rows_before


def _current_setpoint(device) -> float:
    import numpy as np

    return int(np.int16(device.sim.registers["holding"][1])) / 10.0


REFUSALS = [
    ("unknown point", "nope", 1.0, {}, "UnknownPoint"),
    ("above max", "setpoint", 330.0, {}, "OutOfLimits"),
    ("not allowed", "mode", 4, {}, "OutOfLimits"),
    ("NaN", "setpoint", math.nan, {}, "WriteBadArgument"),
    ("inf", "setpoint", math.inf, {}, "WriteBadArgument"),
    ("bool as int", "setpoint", True, {}, "WriteBadArgument"),
    ("int as bool", "pump_on", 1, {}, "WriteBadArgument"),
    ("wrong type", "setpoint", "297", {}, "WriteBadArgument"),
    ("needs rounding", "setpoint", 297.55, {}, "WriteBadArgument"),
    ("register overflow", "count16", 70000, {}, "OutOfLimits"),
    ("negative into uint16", "count16", -1, {}, "OutOfLimits"),
    ("max_step", "setpoint", "current+15", {}, "OutOfLimits"),
    ("expected mismatch", "setpoint", "current+1", {"expected": 1.0}, "Conflict"),
    ("not_after passed", "setpoint", "current+1", {"not_after": 1_000_000_000.0}, "Expired"),
]


@pytest.mark.parametrize("case,point,value,kw,error", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_audited_nothing_written(op, node, device, case, point, value, kw, error):
    """Each refusal raises its typed error with ``request_id`` and ``point``, is audited
    under its refusal name, and nothing reaches the device."""
    from sisock import client as c

    if value == "current+15":
        value = _current_setpoint(device) + 15.0
    elif value == "current+1":
        value = _current_setpoint(device) + 1.0
    before = device.writes
    rid = str(uuid.uuid4())
    with pytest.raises(getattr(c, error)) as info:
        op.set(NODE, point, value, request_id=rid, **kw)
    assert info.value.request_id == rid and info.value.point == point
    assert device.writes == before
    rec = audit_of(node, rid)
    assert len(rec) == 1 and rec[0]["status"] == getattr(c, error).kind, rec


def test_min_interval(op, node, device):
    """A second write sooner than ``min_interval`` is rate_limited, audited, not written."""
    from sisock.client import RateLimited

    assert op.set(NODE, "limited", 7)["status"] == "applied"
    before = device.writes
    with pytest.raises(RateLimited) as info:
        op.set(NODE, "limited", 8)
    assert device.writes == before
    assert audit_of(node, info.value.request_id)[0]["status"] == "rate_limited"


def test_replayed_request_id_writes_once(op, node, device):
    """The same ``request_id`` twice returns the stored outcome; the device gets one write."""
    before = device.writes
    rid = str(uuid.uuid4())
    target = _current_setpoint(device) + 0.5
    first = op.set(NODE, "setpoint", target, request_id=rid)
    second = op.set(NODE, "setpoint", target, request_id=rid)
    assert first["status"] == second["status"] == "applied"
    assert second["t_received"] == first["t_received"]
    assert device.writes == before + 1
    assert len(audit_of(node, rid)) == 1


def test_dry_run(op, node, device):
    """A dry run checks everything, reads the current value and writes nothing."""
    from sisock.client import OutOfLimits

    before = device.writes
    current = _current_setpoint(device)
    out = op.set(NODE, "setpoint", current + 1.0, dry_run=True)
    assert out["status"] == "dry_run_ok" and out["old"] == pytest.approx(current)
    with pytest.raises(OutOfLimits):
        op.set(NODE, "setpoint", 400.0, dry_run=True)
    assert device.writes == before
    assert audit_of(node, out["request_id"])[0]["dry_run"] is True


def test_readback_mismatch_unverified(op, node, device):
    """A read-back that does not match gives ``unverified`` (the write was sent once)."""
    before = device.writes
    out = op.set(NODE, "bad_rb", 5)
    assert out["status"] == "unverified" and out["readback"] == 0
    assert device.writes == before + 1


def test_device_down_then_back(op, node, device, client):
    """Device down: ``device_unavailable``, nothing queued; after it returns nothing is
    written."""
    from sisock.client import DeviceUnavailable

    live = []
    client.subscribe(NODE, live.append)
    before = device.writes
    device.run(device.sim.stop())
    try:
        wait_for(
            lambda: any("fast_ok" in s.data and not s.data["fast_ok"][-1] for s in live),
            30,
            "the node never saw the device down",
        )
        with pytest.raises(DeviceUnavailable) as info:
            op.set(NODE, "setpoint", _current_setpoint(device) + 0.5)
        assert audit_of(node, info.value.request_id)[0]["status"] == "device_unavailable"
    finally:
        device.run(device.sim.start())
    n = len(live)
    wait_for(lambda: any("fast_ok" in s.data and s.data["fast_ok"][-1] for s in live[n:]), 30, "polling did not resume")
    # 20 more good polls (2 s at 10 Hz) went through the connection a queued write shares
    m = len(live)
    wait_for(
        lambda: sum(1 for s in live[m:] if "fast_ok" in s.data and s.data["fast_ok"][-1]) >= 20,
        60,
        "polling stopped after the device came back",
    )
    assert device.writes == before


def test_node_cannot_register_another_nodes_operator_uris(stack, node, op):
    """A server session cannot register ``operator.<another node's name>.*`` (nor any
    leaf but points/set/audit); the owner's registrations keep working."""
    from autobahn.wamp.exception import ApplicationError

    from sisock.client import Client
    from sisock.site.settings import load_settings

    s = load_settings("server")
    c = Client(s, timeout=10).open()
    try:

        async def register(uri):
            return await c._session.register(lambda *a, **k: None, uri)

        # Crossbar answers a refused REGISTER of a URI that is already registered
        # with procedure_already_exists (its existence check replaces the
        # not_authorized reply); either way the registration is refused.
        for uri in (
            f"{s.base_uri}.operator.{NODE}.set",
            f"{s.base_uri}.operator.{NODE}.points",
            f"{s.base_uri}.operator.{NODE}.audit",
        ):
            with pytest.raises(ApplicationError) as info:
                asyncio.run_coroutine_threadsafe(register(uri), c._loop).result(20)
            assert info.value.error in ("wamp.error.not_authorized", "wamp.error.procedure_already_exists")
        for uri in (f"{s.base_uri}.operator.{NODE}.shutdown", f"{s.base_uri}.operator.{NODE}.set.extra"):
            with pytest.raises(ApplicationError) as info:
                asyncio.run_coroutine_threadsafe(register(uri), c._loop).result(20)
            assert info.value.error == "wamp.error.not_authorized"
    finally:
        c.close()
    assert "setpoint" in op.points(NODE)


def test_polls_never_interleave_with_writes(op, node, device):
    """Writes at 5/s while the 10 Hz group polls: no write falls inside a poll cycle."""
    device.sim.pdu_log.clear()
    base = _current_setpoint(device)
    writes = 0
    for i in range(20):
        op.set(NODE, "setpoint", base + (0.5 if i % 2 == 0 else 0.0))
        writes += 1
        time.sleep(0.2)  # paces the writes at 5/s

    def poll_starts(log: list) -> list[int]:
        """Where polls of "fast" begin: a holding read of 1..21, then an input read."""
        return [i for i, (fc, addr, n) in enumerate(log) if fc == 3 and addr == 1 and n > 1]

    wait_for(lambda: len(poll_starts(list(device.sim.pdu_log))) >= 21, 60, "fewer than 21 polls while writing")
    log = list(device.sim.pdu_log)
    assert sum(1 for fc, *_ in log if fc in (5, 6, 15, 16)) == writes
    polls = poll_starts(log)
    for i in polls[:-1]:
        assert log[i + 1][0] == 4, f"request {log[i + 1]} inside a poll: {log[i - 2 : i + 4]}"


def test_lost_reply_unverified(stack, operator, device, tmp_path):
    """A write the device applied but whose answer was lost reads ``unverified``."""
    from sisock.client import connect

    port = device.start_proxy()
    cfg = tmp_path / "p.toml"
    cfg.write_text(node_config(port, "wmbp", str(tmp_path / "audit.sqlite")))
    p = stack.start("wmbp", "serve", "modbus", "--config", str(cfg), "--archive", str(tmp_path / "archive"))
    try:
        with connect(user=operator[0], secret=operator[1], timeout=30) as c:
            wait_for(lambda: _points(c, "wmbp"), 60, f"proxy node never up:\n{p.log()}")
            before = device.writes
            device.drop_write_replies = True
            out = c.set("wmbp", "count16", 42)
            device.drop_write_replies = False
            assert out["status"] == "unverified" and "lost" in out["message"], out
            assert device.writes == before + 1  # sent once: no retry after the timeout
            assert device.sim.registers["holding"][16] == 42
    finally:
        device.drop_write_replies = False
        p.stop()


def test_kill9_between_intent_and_outcome(op, node, device):
    """``kill -9`` while a write waits for its read-back leaves an ``unknown`` record."""
    rid = str(uuid.uuid4())
    errors = []

    def write():
        try:
            op.set(NODE, "slow_rb", 3, request_id=rid, timeout=60)
        except Exception as exc:  # the node dies under the call
            errors.append(exc)

    th = threading.Thread(target=write, daemon=True)
    th.start()

    def intent():
        try:
            rows = (
                sqlite3.connect(str(node["audit"]))
                .execute("SELECT status FROM attempts WHERE request_id=?", (rid,))
                .fetchall()
            )
        except sqlite3.Error:
            return False
        return rows == [("intent",)]

    wait_for(intent, 30, "no intent recorded")
    wait_for(lambda: device.sim.registers["holding"][18] == 3, 10, "write not received")
    node["proc"].kill()
    assert [r["status"] for r in audit_of(node, rid)] == ["unknown"]
    node["proc"] = node["start"]()
    wait_for(lambda: _points(op, NODE), 60, "node did not come back")
    recs = [r for r in op.audit(NODE, -3600, 0) if r["request_id"] == rid]
    assert [r["status"] for r in recs] == ["unknown"]
    th.join(70)


def test_bad_write_config_fails_at_start(stack, procs, tmp_path, device):
    """A bad ``[[write]]`` stops the node at start with a message naming the key."""
    text = node_config(device.sim.port, "wbad", str(tmp_path / "a.sqlite"))
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text.replace("max_step = 10.0", "max_stepp = 10.0"))
    p = procs("wbad", "serve", "modbus", "--config", str(cfg))
    wait_for(lambda: not p.alive(), 30, "bad config did not stop the node")
    assert p.proc.returncode == 2
    assert "max_stepp" in p.log() and "setpoint" in p.log()
    assert "Traceback" not in p.log()


def test_grafana_annotations_of_writes(op, node, web_demo):
    """``sisock web`` serves the node's writes as Grafana annotations (who set what)."""
    import json

    from conftest import http

    op.set(NODE, "mode", 2, reason="annotation")
    body = {
        "range": {"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"},
        "annotation": {"name": "writes", "query": f"{NODE}::write_point"},
    }
    status, _, raw = http("POST", web_demo.url + "/annotations", body)
    assert status == 200, raw
    out = json.loads(raw)
    assert any(a["text"].startswith("alice set mode = 2") for a in out), out[-3:]


def test_command_line_set_and_audit(stack, operator, node, device):
    """``sisock set`` writes (exit 0) or reports a refusal (exit 2, nothing written);
    ``sisock audit`` prints the table; ``sisock credentials add --role operator`` works."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, SISOCK_USER=operator[0], SISOCK_SECRET=operator[1])

    def sisock(*argv):
        return subprocess.run(
            [sys.executable, "-m", "sisock", *argv], env=env, capture_output=True, text=True, timeout=120
        )

    before = device.writes
    dry = sisock("set", NODE, "mode", "3", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("dry_run_ok"), dry.stdout + dry.stderr
    ok = sisock("set", NODE, "mode", "3", "--reason", "from the shell")
    assert ok.returncode == 0 and ok.stdout.startswith("applied"), ok.stdout + ok.stderr
    bad = sisock("set", NODE, "mode", "7")
    assert bad.returncode == 2 and "out_of_limits" in bad.stderr and "nothing" in bad.stderr
    assert device.writes == before + 1
    table = sisock("audit", NODE, "--since", "-3600")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("time (UTC)") and "caller" in lines[0]
    assert any("alice" in ln and "mode" in ln and "from the shell" in ln for ln in lines)
    assert any("out_of_limits" in ln for ln in lines)
    anonymous = subprocess.run(
        [sys.executable, "-m", "sisock", "set", NODE, "mode", "2"],
        env={k: v for k, v in env.items() if k not in ("SISOCK_USER", "SISOCK_SECRET")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert anonymous.returncode != 0 and "operator account" in anonymous.stderr
    home = stack.home / "cli-accounts"
    issued = sisock("credentials", "add", "carol", "--role", "operator", "--home", str(home))
    assert issued.returncode == 0 and "SISOCK_SECRET=" in issued.stdout
    assert accounts.read(home)["carol"]["role"] == "operator"
