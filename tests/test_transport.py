"""Which WAMP transport each program speaks (WebSocket or RawSocket), without a router."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from sisock.core import wire
from sisock.core.errors import BadArgument
from sisock.site.router import prepare
from sisock.site.settings import load_settings
from sisock.wamp.transport import RAWSOCKET_MAX_MESSAGE, transport_configs


def kinds(configs: list[dict]) -> list[str]:
    """The transport types of a list of autobahn transport dicts."""
    return [c["type"] for c in configs]


def test_url_scheme_picks_the_transport(tmp_path):
    """ws:// speaks WebSocket only; rs:// and rss:// RawSocket only, TLS for rss://."""
    ws = transport_configs(load_settings(router_url="ws://h:8080/ws", home=tmp_path))
    assert kinds(ws) == ["websocket"]
    assert ws[0]["url"] == "ws://h:8080/ws" and ws[0]["serializers"][0] == "msgpack"
    rs = transport_configs(load_settings(router_url="rs://h:8080", home=tmp_path))
    assert kinds(rs) == ["rawsocket"]
    assert rs[0]["url"] == "rs://h:8080" and rs[0]["serializer"] == "msgpack"
    assert rs[0]["options"]["max_message_payload_size"] == RAWSOCKET_MAX_MESSAGE
    assert "tls" not in rs[0]["endpoint"]
    ca = tmp_path / "ca.crt"
    ca.write_text("not read here")
    rss = transport_configs(load_settings(router_url="rss://h:8443", home=tmp_path, tls_ca=str(ca)))
    assert kinds(rss) == ["rawsocket"] and rss[0]["url"] == "rss://h:8443"
    assert rss[0]["endpoint"]["tls"] == {"hostname": "h", "trust_root": str(ca)}
    one = transport_configs(load_settings(router_url="rs://h:8080", home=tmp_path), ["cbor"])
    assert one[0]["serializer"] == "cbor"


def test_rawsocket_setting(tmp_path, monkeypatch):
    """SISOCK_ROUTER_RAWSOCKET=yes tries RawSocket first on the same port, then WebSocket."""
    monkeypatch.setenv("SISOCK_ROUTER_RAWSOCKET", "yes")
    both = transport_configs(load_settings(router_url="wss://h:9000/ws", home=tmp_path))
    assert kinds(both) == ["rawsocket", "websocket"]
    assert both[0]["url"] == "rss://h:9000" and both[0]["endpoint"]["port"] == 9000
    assert both[0]["endpoint"]["tls"]["hostname"] == "h"
    assert both[1]["url"] == "wss://h:9000/ws"
    monkeypatch.setenv("SISOCK_ROUTER_RAWSOCKET", "no")
    assert kinds(transport_configs(load_settings(router_url="ws://h:1/ws", home=tmp_path))) == ["websocket"]
    monkeypatch.setenv("SISOCK_ROUTER_RAWSOCKET", "maybe")
    with pytest.raises(BadArgument, match="SISOCK_ROUTER_RAWSOCKET"):
        load_settings(home=tmp_path)


def test_auto_follows_the_local_router(tmp_path, monkeypatch):
    """By default a streaming client tries RawSocket when this SISOCK_HOME's router offers it."""
    monkeypatch.delenv("SISOCK_ROUTER_RAWSOCKET", raising=False)
    s = load_settings(router_url="ws://127.0.0.1:18081/ws", home=tmp_path)
    # no router configured here
    assert kinds(transport_configs(s, streams_big_replies=True)) == ["websocket"]
    prepare(s)  # what `sisock router` writes before starting Crossbar
    assert kinds(transport_configs(s, streams_big_replies=True)) == ["rawsocket", "websocket"]
    # the hub and the web bridge may pass one-message replies over 16 MiB: WebSocket
    assert kinds(transport_configs(s)) == ["websocket"]
    other_port = load_settings(router_url="ws://127.0.0.1:18082/ws", home=tmp_path)
    assert kinds(transport_configs(other_port, streams_big_replies=True)) == ["websocket"]


def test_zero_copy_parts_point_into_the_result():
    """zero_copy parts carry memoryviews of the arrays, msgpack sends them as bytes."""
    n = 100_000
    t = np.arange(n, dtype=np.float64)
    x = np.sin(t)
    result = {"data": {"x": x}, "timeline": {"tl": {"t": t, "finalized_until": None}}}
    parts = list(wire.chunk_reply(result, 2**16, zero_copy=True))
    assert len(parts) > 10
    first = parts[0]["data"]["x"]["data"]
    assert isinstance(first, memoryview) and np.shares_memory(np.asarray(first), x)
    asm = wire.Assembler()
    for part in parts:
        asm.add(msgpack.unpackb(msgpack.packb(part, use_bin_type=True), raw=False))
    out = asm.reply()
    np.testing.assert_array_equal(out["data"]["x"], x)
    np.testing.assert_array_equal(out["timeline"]["tl"]["t"], t)


@pytest.mark.integration  # starts its own WebSocket-only router
def test_client_falls_back_to_websocket_on_a_websocket_only_router(tmp_path, monkeypatch):
    """SISOCK_ROUTER_RAWSOCKET=yes against a router that only speaks WebSocket (as
    sisock 0.x routers do) still connects, over WebSocket, within the timeout."""
    import json
    import os
    import subprocess

    from conftest import free_port, wait_port
    from sisock.client import NodeUnknown, connect
    from sisock.site.router import command

    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    s = load_settings(router_url=url, home=tmp_path)
    cbdir = prepare(s)
    config = json.loads((cbdir / "config.json").read_text())
    universal = config["workers"][0]["transports"][0]
    config["workers"][0]["transports"][0] = {**universal["websocket"]["ws"], "endpoint": universal["endpoint"]}
    (cbdir / "config.json").write_text(json.dumps(config))
    log = open(tmp_path / "router.log", "wb")
    router = subprocess.Popen(command(cbdir, "warn"), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port(port, 30, router)
        monkeypatch.setenv("SISOCK_ROUTER_RAWSOCKET", "yes")
        with connect(url, home=str(tmp_path), timeout=20) as c:
            assert "websocket" in type(c._session.transport).__module__
            with pytest.raises(NodeUnknown):  # a round trip: no hub runs here
                c.nodes()
    finally:
        os.killpg(router.pid, 15)
        router.wait(15)


@pytest.mark.unit
@pytest.mark.parametrize("delay", [0.5, 0.2])
def test_reconnection_delay_stays_put_through_a_long_outage(delay):
    """autobahn's reconnection delays for our transports stay at the configured delay over
    5,000 attempts (with jitter, each delay drawn around the last, they drifted to zero:
    thousands of connection attempts a second after minutes of outage)."""
    from autobahn.wamp.component import _create_transport

    settings = load_settings("server", router_url="ws://127.0.0.1:8080/ws")
    for config in transport_configs(settings, retry_delay=delay):
        transport = _create_transport(0, config)
        delays = []
        for _ in range(5000):
            delays.append(transport.next_delay())
            transport.connect_attempts += 1
        assert delays[0] == 0
        assert min(delays[1:]) >= 0.9 * delay and max(delays[1:]) <= 1.1 * delay, (min(delays[1:]), max(delays[1:]))
