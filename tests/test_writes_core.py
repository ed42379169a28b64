"""Operator writes without a router: the sans-I/O write core and the audit log."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys

import pytest

from sisock.site import access
from sisock.writes.audit import AuditLog
from sisock.writes.rules import (
    Conflict,
    DeviceUnavailable,
    Expired,
    NotAuthorized,
    OutOfLimits,
    PointSpec,
    RateLimited,
    Readback,
    TokenBucket,
    UnknownPoint,
    WriteBadArgument,
    WriteCore,
    WriteUncertain,
    check_value,
    offers_writes,
    parse_set,
)

pytestmark = pytest.mark.unit

OP = ("alice", "operator")


class FakeSide:
    """A write side in memory that counts the writes it receives."""

    def __init__(self) -> None:
        self.values = {"setpoint": 295.0, "pump": True, "mode": 1, "measured": 295.0}
        self.writes: list[tuple[str, object]] = []
        self.down = False
        self.lose_reply = False
        self.readback_offset = 0.0

    def write_points(self):
        return {
            "setpoint": PointSpec(
                "setpoint",
                "number",
                "K",
                min=280.0,
                max=320.0,
                max_step=5.0,
                min_interval=None,
                scale=0.1,
                raw_integer=True,
                raw_min=-32768,
                raw_max=32767,
                readback=Readback("measured", 0.05, 0.0),
            ),
            "pump": PointSpec("pump", "bool", readback=Readback("pump")),
            "mode": PointSpec(
                "mode",
                "integer",
                allowed=(1, 2, 3),
                raw_integer=True,
                raw_min=0,
                raw_max=65535,
                min_interval=10.0,
                readback=Readback("mode"),
            ),
            "plain": PointSpec("plain", "number"),
        }

    def read_point(self, name):
        if self.down:
            raise DeviceUnavailable("device down")
        return self.values.get(name, 0.0)

    def write_point(self, name, value):
        if self.down:
            raise DeviceUnavailable("device down")
        self.writes.append((name, value))
        self.values[name] = value
        if name == "setpoint":
            self.values["measured"] = value + self.readback_offset
        if self.lose_reply:
            raise WriteUncertain("no response (timeout)")


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def env(tmp_path):
    """A write core over a fake side, its audit log and its clock."""
    side = FakeSide()
    audit = AuditLog(tmp_path / "audit.sqlite")
    clock = Clock()
    core = WriteCore(side, audit, "fake", clock=clock, sleep=lambda s: None)
    return side, audit, core, clock


def do_set(core, point, value, rid, caller=OP, **kw):
    """Call the core's ``set`` as the WAMP shell would."""
    return core.set(parse_set((point, value, rid), kw), *caller)


def test_applied_with_readback(env):
    """A valid write is sent once, read back within tolerance and audited as applied."""
    side, audit, core, clock = env
    out = do_set(core, "setpoint", 297.5, "r1", reason="warm up")
    assert out["status"] == "applied" and out["old"] == 295.0 and out["readback"] == 297.5
    assert side.writes == [("setpoint", 297.5)]
    rec = audit.query(0, 2e9)
    assert len(rec) == 1 and rec[0]["status"] == "applied"
    assert rec[0]["caller_authid"] == "alice" and rec[0]["caller_role"] == "operator"
    assert rec[0]["reason"] == "warm up" and rec[0]["old"] == 295.0


@pytest.mark.parametrize(
    "point,value,exc",
    [
        ("nope", 1.0, UnknownPoint),
        ("setpoint", 330.0, OutOfLimits),
        ("setpoint", 270.0, OutOfLimits),
        ("mode", 4, OutOfLimits),
        ("setpoint", math.nan, WriteBadArgument),
        ("setpoint", math.inf, WriteBadArgument),
        ("setpoint", True, WriteBadArgument),
        ("pump", 1, WriteBadArgument),
        ("setpoint", "297", WriteBadArgument),
        ("setpoint", [297.0], WriteBadArgument),
        ("setpoint", 297.55, WriteBadArgument),
        ("mode", 2.5, WriteBadArgument),
        ("setpoint", 301.0, OutOfLimits),
    ],
)
def test_refusals_are_audited_and_write_nothing(env, point, value, exc):
    """Each refusal raises its typed error, is audited with its kind, and nothing is written."""
    side, audit, core, clock = env
    with pytest.raises(exc) as info:
        do_set(core, point, value, "rid-" + point)
    assert info.value.request_id == "rid-" + point and info.value.point == point
    assert side.writes == []
    rec = audit.query(0, 2e9)
    assert [r["status"] for r in rec] == [exc.kind]


def test_register_overflow(tmp_path):
    """A value whose raw form does not fit the register is refused as out_of_limits."""
    spec = PointSpec("x", "number", scale=0.1, raw_integer=True, raw_min=-32768, raw_max=32767)
    assert check_value(spec, 3276.7) == 3276.7
    with pytest.raises(OutOfLimits, match="overflows"):
        check_value(spec, 3276.8)
    u16 = PointSpec("u", "integer", raw_integer=True, raw_min=0, raw_max=65535)
    with pytest.raises(OutOfLimits):
        check_value(u16, 65536)
    with pytest.raises(OutOfLimits):
        check_value(u16, -1)


def test_not_authorized_without_disclosure(env):
    """A caller not disclosed, or not an operator, is refused and audited."""
    side, audit, core, clock = env
    with pytest.raises(NotAuthorized):
        do_set(core, "setpoint", 296.0, "a", caller=(None, None))
    with pytest.raises(NotAuthorized):
        do_set(core, "setpoint", 296.0, "b", caller=("bob", "consumer"))
    with pytest.raises(NotAuthorized):
        core.points(None, None)
    assert side.writes == []
    assert [r["status"] for r in audit.query(0, 2e9)] == ["not_authorized"] * 2


def test_expected_and_not_after(env):
    """``expected`` is compare-and-set; ``not_after`` in the past expires the request."""
    side, audit, core, clock = env
    with pytest.raises(Conflict):
        do_set(core, "setpoint", 296.0, "c1", expected=290.0)
    with pytest.raises(Expired):
        do_set(core, "setpoint", 296.0, "c2", not_after=clock.t - 1)
    assert side.writes == []
    assert do_set(core, "setpoint", 296.0, "c3", expected=295.0, not_after=clock.t + 5)["status"] == "applied"
    assert [r["status"] for r in audit.query(0, 2e9)] == ["conflict", "expired", "applied"]


def test_idempotent_request_id(env):
    """The same request_id returns the stored outcome and writes once; reuse for
    another request is refused."""
    side, audit, core, clock = env
    first = do_set(core, "setpoint", 296.0, "same")
    again = do_set(core, "setpoint", 296.0, "same")
    assert again["status"] == first["status"] == "applied" and "replayed" in again["message"]
    assert len(side.writes) == 1
    with pytest.raises(WriteBadArgument, match="already used"):
        do_set(core, "setpoint", 297.0, "same")
    with pytest.raises(OutOfLimits):
        do_set(core, "setpoint", 999.0, "refused-once")
    with pytest.raises(OutOfLimits, match="replayed"):
        do_set(core, "setpoint", 999.0, "refused-once")
    assert len(side.writes) == 1


def test_min_interval_and_rate(env):
    """A second write sooner than ``min_interval`` is rate_limited; so is a burst."""
    side, audit, core, clock = env
    assert do_set(core, "mode", 2, "m1")["status"] == "applied"
    clock.t += 3
    with pytest.raises(RateLimited, match="min_interval"):
        do_set(core, "mode", 3, "m2")
    clock.t += 8
    assert do_set(core, "mode", 3, "m3")["status"] == "applied"
    assert side.writes == [("mode", 2), ("mode", 3)]
    bucket = TokenBucket(5.0, 2)
    assert bucket.take("a", 0.0) == 0 and bucket.take("a", 0.0) == 0
    assert bucket.take("a", 0.0) > 0 and bucket.take("b", 0.0) == 0
    assert bucket.take("a", 0.3) == 0


def test_rate_limited_core(tmp_path):
    """More writes than the burst from one caller are refused as rate_limited."""
    side = FakeSide()
    core = WriteCore(
        side, AuditLog(tmp_path / "a.sqlite"), "fake", clock=Clock(), sleep=lambda s: None, rate=1.0, burst=2
    )
    do_set(core, "pump", False, "p1")
    do_set(core, "pump", True, "p2")
    with pytest.raises(RateLimited, match="too many"):
        do_set(core, "pump", False, "p3")
    assert len(side.writes) == 2


def test_dry_run(env):
    """A dry run makes every check, reads the current value and writes nothing."""
    side, audit, core, clock = env
    out = do_set(core, "setpoint", 298.0, "d1", dry_run=True)
    assert out["status"] == "dry_run_ok" and out["old"] == 295.0
    with pytest.raises(OutOfLimits):
        do_set(core, "setpoint", 310.0, "d2", dry_run=True)
    assert side.writes == []
    rec = audit.query(0, 2e9)
    assert [(r["status"], r["dry_run"]) for r in rec] == [("dry_run_ok", True), ("out_of_limits", True)]


def test_device_down_and_unverified(env):
    """Device down: device_unavailable, nothing sent. Read-back off or reply lost: unverified."""
    side, audit, core, clock = env
    side.down = True
    with pytest.raises(DeviceUnavailable):
        do_set(core, "setpoint", 296.0, "u1")
    side.down = False
    side.readback_offset = 1.0
    assert do_set(core, "setpoint", 296.0, "u2")["status"] == "unverified"
    side.readback_offset = 0.0
    side.lose_reply = True
    out = do_set(core, "setpoint", 297.0, "u3")
    assert out["status"] == "unverified" and "lost" in out["message"]
    assert [r["status"] for r in audit.query(0, 2e9)] == ["device_unavailable", "unverified", "unverified"]


def test_malformed_calls():
    """``parse_set`` names the bad argument."""
    with pytest.raises(WriteBadArgument, match="request_id"):
        parse_set(("p", 1.0), {})
    with pytest.raises(WriteBadArgument, match="request_id"):
        parse_set(("p", 1.0, ""), {})
    with pytest.raises(WriteBadArgument, match="unknown argument"):
        parse_set(("p", 1.0, "r"), {"force": True})
    with pytest.raises(WriteBadArgument, match="dry_run"):
        parse_set(("p", 1.0, "r"), {"dry_run": 1})
    with pytest.raises(WriteBadArgument, match="not_after"):
        parse_set(("p", 1.0, "r"), {"not_after": "soon"})


def test_offers_writes():
    """Only a core with all three write-side methods offers writes."""
    assert offers_writes(FakeSide())
    assert not offers_writes(object())


def test_intent_without_outcome_reads_unknown(tmp_path):
    """A process killed between intent and outcome leaves a row that reads ``unknown``."""
    path = tmp_path / "crash.sqlite"
    code = (
        "import os, signal\n"
        "from sisock.writes.audit import AuditLog, INTENT\n"
        f"a = AuditLog({str(path)!r})\n"
        "a.record(request_id='k', t=1.0, caller_authid='alice', caller_role='operator',"
        " point='setpoint', old=1, requested=2, status=INTENT)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert p.returncode == -9
    raw = sqlite3.connect(str(path)).execute("SELECT status FROM attempts").fetchall()
    assert raw == [("intent",)]  # committed before the kill
    log = AuditLog(path)
    assert log.recovered == 1
    assert [r["status"] for r in log.query(0, 10)] == ["unknown"]


def test_authz_operator_rule():
    """A server may register only its own ``operator.<name>.points/set/audit``, exactly."""
    base = "org.simonsobservatory"
    d = access.decide(base, f"{base}.operator.mb.set", "register", "exact")
    assert d.verdict == "ask_owner" and d.name == "mb"
    assert access.decide(base, f"{base}.operator.mb.set", "register", "prefix").verdict == "deny"
    assert access.decide(base, f"{base}.operator.mb.other", "register").verdict == "deny"
    assert access.decide(base, f"{base}.operator.mb.set", "call").verdict == "deny"
    assert access.decide(base, f"{base}.operator.", "register").verdict == "deny"
    assert access.decide(base, f"{base}.consumer.mb.get_data", "register").verdict == "ask_owner"


def test_grafana_write_annotations():
    """Each write of the ``operator_writes`` timeline is one Grafana annotation."""
    import numpy as np

    from sisock.web.grafana import write_annotations

    out = write_annotations(
        {"name": "writes"},
        "mb",
        np.array([10.0, 20.0]),
        {
            "write_point": np.array(["setpoint", "pump_on"]),
            "write_value": np.array([297.5, 0.0]),
            "write_caller": np.array(["alice", "bob"]),
            "write_status": np.array(["applied", "unverified"]),
        },
    )
    assert [a["time"] for a in out] == [10000.0, 20000.0]
    assert out[0]["text"] == "alice set setpoint = 297.5 (applied)"
    assert "bob" in out[1]["tags"] and out[1]["annotation"] == {"name": "writes"}


def test_writes_are_serialised_and_bounded(tmp_path):
    """A write waits for the node's write in progress, and is refused (audited) after
    ``busy_wait`` instead of holding a worker thread for ever."""
    import threading

    side = FakeSide()
    gate, entered = threading.Event(), threading.Event()
    plain_write = side.write_point

    def slow_write(name, value):
        entered.set()
        gate.wait(10)
        plain_write(name, value)

    side.write_point = slow_write
    audit = AuditLog(tmp_path / "a.sqlite")
    core = WriteCore(side, audit, "fake", clock=Clock(), sleep=lambda s: None, busy_wait=0.2)
    first = threading.Thread(target=do_set, args=(core, "pump", False, "slow"))
    first.start()
    assert entered.wait(10)
    with pytest.raises(RateLimited, match="in progress"):
        do_set(core, "pump", True, "blocked")
    gate.set()
    first.join(10)
    assert side.writes == [("pump", False)]
    assert [r["status"] for r in audit.query(0, 2e9)] == ["applied", "rate_limited"]  # by intent


_SHELL_CHECK = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_writes_core import FakeSide, OP
from sisock.wamp.service import NodeService
from sisock.wamp.operator import WritesTimeline
from sisock.core.protocol import Result
from sisock.site.settings import Settings
from sisock.writes.rules import offers_writes, parse_set


class WritableCore(FakeSide):
    name = "gen"
    description = "a generic writable core"

    def get_fields(self, start, end):
        return {{}}, {{}}

    def get_data(self, fields, start, end, min_stride=None, method="mean", *, streaming=False):
        return Result(data={{f: np.zeros(0) for f in fields}})


class Component:
    def on(self, *args):
        pass


home = {home!r}
service = NodeService(WritableCore(), Settings(home=home), component=Component())
assert service.operator is not None and isinstance(service.node, WritesTimeline)
assert service.operator.uri("set") == "org.simonsobservatory.operator.gen.set"
out = service.operator.core.set(parse_set(("pump", False, "g1"), {{}}), *OP)
assert out["status"] == "applied", out
fields, timelines = service.node.get_fields(0, 4e9)
assert fields["write_point"]["timeline"] == "operator_writes"
r = service.node.get_data(["write_point", "write_caller", "nothing"], 0, 4e9)
assert list(r.data["write_point"]) == ["pump"] and list(r.data["write_caller"]) == ["alice"]
assert len(r.data["nothing"]) == 0
class ReadOnly:
    name = "ro"
    description = "read only"

    def get_fields(self, start, end):
        return {{}}, {{}}

    def get_data(self, fields, start, end, min_stride=None, method="mean", *, streaming=False):
        return Result()


plain = NodeService(ReadOnly(), Settings(home=home), component=Component())
assert plain.operator is None
from sisock.servers.sensors import SensorsCore
from sisock.servers.weather import WeatherCore
assert not offers_writes(WeatherCore) and not offers_writes(SensorsCore)
print("ok")
"""


def test_any_core_offers_writes_through_the_shell(tmp_path):
    """NodeService gives a core with the write side the operator shell, an audit log
    under SISOCK_HOME and the ``operator_writes`` timeline; a read-only core gets none
    (the weather and sensors examples are read-only). Runs in a fresh interpreter
    (the Twisted shell cannot be imported after the asyncio client)."""
    from pathlib import Path

    script = _SHELL_CHECK.format(tests=str(Path(__file__).parent), home=str(tmp_path))
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "ok" in p.stdout, p.stdout + p.stderr
    assert (tmp_path / "audit" / "gen.sqlite").exists()


def test_one_process_owns_the_audit_log(tmp_path):
    """A second writer of the same audit log is refused (it would turn the first one's
    write in progress into ``unknown``); readers may open it meanwhile."""
    from sisock.writes.audit import INTENT, AuditLogBusy

    path = tmp_path / "own.sqlite"
    owner = AuditLog(path)
    owner.record(
        request_id="w",
        t=1.0,
        caller_authid="alice",
        caller_role="operator",
        point="p",
        old=1,
        requested=2,
        status=INTENT,
    )
    with pytest.raises(AuditLogBusy, match="in use"):
        AuditLog(path)
    reader = AuditLog(path, readonly=True)
    assert [r["status"] for r in reader.query(0, 10)] == ["unknown"]  # in flight: not known
    owner.finish(1, "applied", readback=2)
    assert [r["status"] for r in reader.query(0, 10)] == ["applied"]
    owner.close()
    assert AuditLog(path).recovered == 0


def test_request_id_belongs_to_its_caller(env):
    """Another operator replaying someone's request_id is refused and audited under
    their own name (before, they got the first caller's outcome and left no trace)."""
    side, audit, core, clock = env
    do_set(core, "setpoint", 296.0, "alices-id")
    with pytest.raises(WriteBadArgument, match="another caller"):
        do_set(core, "setpoint", 296.0, "alices-id", caller=("bob", "operator"))
    assert len(side.writes) == 1
    rows = [r for r in audit.query(0, 2e9) if r["request_id"] == "alices-id"]
    assert {r["caller_authid"] for r in rows} == {"alice", "bob"}


def test_audit_log_is_private(tmp_path):
    """The audit log (who changed what, and why) is readable by the node's account only."""
    import stat

    log = AuditLog(tmp_path / "audit" / "node.sqlite")
    log.close()
    assert stat.S_IMODE(os.stat(tmp_path / "audit").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "audit" / "node.sqlite").st_mode) == 0o600


def test_client_errors_match_the_refusals_nodes_send():
    """Every refusal a node sends has one typed client error of the same ``kind``, and
    no client error waits for a kind no node sends (the two sides of one contract)."""
    from sisock.consumer import errors as client
    from sisock.writes.rules import REFUSALS

    typed = {
        c.kind: c
        for c in vars(client).values()
        if isinstance(c, type) and issubclass(c, client.WriteRefused) and c.kind
    }
    assert set(typed) == set(REFUSALS)
    assert all(issubclass(c, client.RemoteError) for c in typed.values())
