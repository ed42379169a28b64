"""Unit tests of the pure foundation modules (no router)."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from sisock.site import credentials
from sisock.core import wire
from sisock.site.access import decide, node_name
from sisock.core.errors import BadArgument
from sisock.hub.registry import Registry
from sisock.site.router import render, template_path
from sisock.site.settings import load_settings
from sisock.core.protocol import check_encoding, check_interval, check_min_stride, sisock_to_unix_time

BASE = "org.simonsobservatory"


def test_registry_ownership_rules():
    """Names belong to the first session; only it can list, re-add or subtract them."""
    r = Registry()
    assert r.claim("a", 1) and r.claim("a", 1)
    assert not r.claim("a", 2)
    assert r.listed() == []  # claimed is not listed
    assert r.add("a", "desc", 1) == (True, True)
    assert r.add("a", "desc", 1) == (True, False)  # idempotent re-add
    assert r.add("a", "x", 2) == (False, False)
    assert r.subtract("a", 2) is None and r.owner("a") == 1
    assert r.listed() == [{"name": "a", "description": "desc"}]
    assert r.subtract("a", 1).name == "a"
    assert r.owner("a") is None


def test_registry_drop_session_returns_listed_only():
    """A leaving session frees all its names; only listed ones are announced."""
    r = Registry()
    r.add("x", "", 7)
    r.claim("y", 7)
    r.add("z", "", 8)
    gone = r.drop_session(7)
    assert [e.name for e in gone] == ["x"]
    assert r.owner("y") is None and r.owner("z") == 8


def test_authorizer_rules():
    """Server sessions may only register/publish under a node name, exact match."""
    assert decide(BASE, f"{BASE}.data_node.add", "call").verdict == "allow_disclose"
    assert decide(BASE, f"{BASE}.data_node.claim", "call").verdict == "allow_disclose"
    assert decide(BASE, "wamp.session.list", "call").verdict == "deny"
    d = decide(BASE, f"{BASE}.consumer.wx.get_data", "register")
    assert d.verdict == "ask_owner" and d.name == "wx"
    assert decide(BASE, f"{BASE}.consumer.wx.get_data", "register", "prefix").verdict == "deny"
    assert decide(BASE, f"{BASE}.consumer.get_data_node", "register").verdict == "deny"
    assert decide(BASE, f"{BASE}.data_node.add", "register").verdict == "deny"
    assert decide(BASE, f"{BASE}.consumer.wx.live", "publish").name == "wx"
    assert decide(BASE, f"{BASE}.consumer.data_node_added", "publish").verdict == "deny"
    assert node_name(f"{BASE}.consumer.a.b.get_data", BASE) is None  # names never nest
    assert decide(BASE, f"{BASE}.consumer.wx.other", "publish").verdict == "deny"
    assert decide(BASE, f"{BASE}.consumer.wx.get_data", "call").verdict == "deny"
    assert decide(BASE, f"{BASE}.hub.started", "subscribe").verdict == "allow"
    assert decide(BASE, f"{BASE}.consumer.wx.live", "subscribe").verdict == "deny"


def test_settings_precedence(tmp_path, monkeypatch):
    """Flags beat environment, environment beats defaults; old WAMP_* names work."""
    for k in list(os.environ):
        if k.startswith("SISOCK_") or k.startswith("WAMP_"):
            monkeypatch.delenv(k)
    s = load_settings(home=tmp_path)
    assert (s.router_url, s.realm, s.base_uri) == ("ws://127.0.0.1:8080/ws", "sisock", BASE)
    monkeypatch.setenv("SISOCK_REALM", "envrealm")
    monkeypatch.setenv("WAMP_USER", "olduser")
    monkeypatch.setenv("WAMP_SECRET", "oldsecret")
    s = load_settings(home=tmp_path)
    assert s.realm == "envrealm" and s.user == "olduser" and s.secret == "oldsecret"
    assert load_settings(realm="flag", home=tmp_path).realm == "flag"


def test_settings_pick_role_credentials(tmp_path, monkeypatch):
    """Without explicit credentials each role reads its own from the generated file."""
    for k in list(os.environ):
        if k.startswith("SISOCK_") or k.startswith("WAMP_"):
            monkeypatch.delenv(k)
    creds = credentials.ensure(tmp_path)
    assert stat.S_IMODE(os.stat(credentials.path(tmp_path)).st_mode) == 0o600
    assert credentials.ensure(tmp_path) == creds  # stable
    for role in ("hub", "server", "consumer"):
        s = load_settings(role, home=tmp_path)
        assert (s.user, s.secret) == (creds[role]["authid"], creds[role]["secret"])
    assert len({c["secret"] for c in creds.values()}) == 3


def test_router_render(tmp_path):
    """The rendered config carries realm, base URI, address, users; the template none."""
    template = json.loads(template_path().read_text())
    text = template_path().read_text()
    creds = credentials.ensure(tmp_path)
    s = load_settings(router_url="ws://127.0.0.1:9999/ws", realm="r1", base_uri="org.example", home=tmp_path)
    cfg = render(template, s, creds)
    worker = cfg["workers"][0]
    assert worker["realms"][0]["name"] == "r1"
    transport = worker["transports"][0]
    assert transport["endpoint"]["port"] == 9999
    # one port, WebSocket on the URL's path and RawSocket, same users on both
    assert set(transport["websocket"]) == {"ws"} and "rawsocket" in transport
    for sub in (transport["websocket"]["ws"], transport["rawsocket"]):
        users = sub["auth"]["wampcra"]["users"]
        assert {u["role"] for u in users.values()} == {"hub", "server", "consumer"}
    assert "{base}" not in json.dumps(cfg) and "org.example.authorize" in json.dumps(cfg)
    for entry in creds.values():
        assert entry["secret"] not in text
    assert "anonymous" not in json.dumps(cfg)


def test_time_conversion_and_validation():
    """Zero/negative times are relative to now; bad ones name the argument."""
    assert sisock_to_unix_time(100.0) == 100.0
    assert sisock_to_unix_time(-10, now=1000.0) == 990.0
    assert sisock_to_unix_time(0, now=1000.0) == 1000.0
    assert check_interval(-10, 0, now=1000.0) == (990.0, 1000.0)
    with pytest.raises(BadArgument, match="'start'"):
        check_interval("x", 0)
    with pytest.raises(BadArgument, match="'end'"):
        check_interval(200, 100)
    with pytest.raises(BadArgument, match="'end'"):
        check_interval(0, float("nan"))


def test_wire_binary_roundtrip_and_lists():
    """Binary envelopes round-trip exactly; JSON lists turn NaN into null."""
    a = np.array([1.5, np.nan, -2.0])
    env = wire.encode_array(a, "binary")
    assert env["dtype"] == "<f8" and isinstance(env["data"], bytes)
    np.testing.assert_array_equal(wire.decode_array(env), a)
    assert wire.encode_array(a) == [1.5, None, -2.0]
    b = np.array([True, False])
    assert wire.decode_array(wire.encode_array(b, "binary")).dtype == bool
    s = np.array(["on", "off"])
    assert wire.encode_array(s, "binary") == ["on", "off"]
    big = np.arange(3, dtype=">i4")
    np.testing.assert_array_equal(wire.decode_array(wire.encode_array(big, "binary")), [0, 1, 2])
    with pytest.raises(BadArgument, match="'encoding'"):
        check_encoding("xml")
    with pytest.raises(BadArgument, match="'min_stride'"):
        check_min_stride(-1)


def test_chunked_reply_reassembles_exactly():
    """Streamed parts rebuild the whole reply bit for bit, each part near the chunk size."""
    rng = np.random.default_rng(3)
    n = 100_003
    result = {
        "data": {
            "a": rng.normal(size=n),
            "b": rng.integers(0, 9, n).astype(np.int16),
            "s": np.array(["x", "y"]),
            "empty": np.empty(0),
        },
        "timeline": {
            "tl": {"t": np.arange(n) * 0.01, "finalized_until": 5.0},
            "tl2": {"t": np.array([1.0, 2.0]), "finalized_until": None},
        },
    }
    parts = list(wire.chunk_reply(result, chunk_bytes=64 * 1024))
    assert len(parts) > 10
    sizes = [
        sum(len(v["data"]) for v in p["data"].values() if isinstance(v, dict))
        + sum(len(tl["t"]["data"]) for tl in p["timeline"].values())
        for p in parts[:-1]
    ]
    assert max(sizes) <= 64 * 1024
    asm = wire.Assembler()
    for p in parts:
        asm.add(p)
    out = asm.reply()
    np.testing.assert_array_equal(out["data"]["a"], result["data"]["a"])
    np.testing.assert_array_equal(out["data"]["b"], result["data"]["b"])
    assert out["data"]["b"].dtype == np.int16
    assert list(out["data"]["s"]) == ["x", "y"] and len(out["data"]["empty"]) == 0
    np.testing.assert_array_equal(out["timeline"]["tl"]["t"], result["timeline"]["tl"]["t"])
    assert out["timeline"]["tl"]["finalized_until"] == 5.0
    assert asm.received == asm.expected
