"""``sisock router --proxies N``: proxy workers carry TLS, authentication and serialization."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

from conftest import REPO, Proc, free_port, wait_for, wait_port
from sisock.site import credentials
from sisock.client import AuthenticationFailed, ClientError, connect
from sisock.site.proxies import SOCKET_NAME, with_proxies
from sisock.site.router import render, template_path
from sisock.site.settings import load_settings

pytestmark = pytest.mark.timeout(240)


def isolated_env(home: Path, url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISOCK_", "WAMP_"))}
    env.update(SISOCK_HOME=str(home), SISOCK_ROUTER_URL=url)
    return env


def rendered(tmp_path: Path, url: str) -> dict:
    settings = load_settings(router_url=url, home=tmp_path)
    creds = {r: {"authid": r, "secret": "x" * 8} for r in ("hub", "server", "consumer")}
    tls = {"key": tmp_path / "k", "cert": tmp_path / "c"} if settings.is_tls else None
    return render(json.loads(template_path().read_text()), settings, creds, tls)


@pytest.mark.unit
def test_with_proxies_rewrites_the_config(tmp_path):
    """N proxy workers share the public endpoint (TLS and users kept); the router worker keeps the realm."""
    base = rendered(tmp_path, "wss://10.1.2.3:9443/ws")
    config = with_proxies(base, 3, tmp_path / "router")
    router, *proxies = config["workers"]
    assert router["type"] == "router" and [p["type"] for p in proxies] == ["proxy"] * 3
    assert router["realms"] == base["workers"][0]["realms"]
    assert router["components"] == base["workers"][0]["components"]  # authorizer stays inside
    (backend,) = router["transports"]
    assert backend["endpoint"] == {"type": "unix", "path": str(tmp_path / "router" / SOCKET_NAME)}
    assert backend["auth"] == {"anonymous-proxy": {"type": "static"}}
    public = base["workers"][0]["transports"][0]
    for p in proxies:
        (t,) = p["transports"]
        assert t["endpoint"]["interface"] == "10.1.2.3" and t["endpoint"]["port"] == 9443
        assert t["endpoint"]["shared"] is True and t["endpoint"]["tls"] == public["endpoint"]["tls"]
        # the same listening transport (WebSocket and RawSocket sides, with
        # their users and serializers), now on a shared endpoint
        assert {k: v for k, v in t.items() if k != "endpoint"} == {k: v for k, v in public.items() if k != "endpoint"}
        assert p["routes"] == {
            "sisock": {"hub": "router", "server": "router", "consumer": "router", "operator": "router"}
        }
        conn = p["connections"]["router"]["transport"]
        assert conn["endpoint"]["path"] == backend["endpoint"]["path"]
    assert len({p["id"] for p in proxies}) == 3
    assert with_proxies(base, 0, tmp_path) is base
    assert "shared" not in base["workers"][0]["transports"][0]["endpoint"]  # input untouched
    with pytest.raises(ValueError, match="between 0 and 64"):
        with_proxies(base, -1, tmp_path)
    with pytest.raises(ValueError, match="shorter SISOCK_HOME"):
        with_proxies(base, 1, tmp_path / ("x" * 120))


def proxy_of(port: int, client_pid: int) -> set[int]:
    """Pids of the router-side processes holding ``client_pid``'s connections to ``port``."""
    conns = psutil.net_connections(kind="tcp")
    client_ports = {
        c.laddr.port
        for c in conns
        if c.pid == client_pid and c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }
    return {
        c.pid
        for c in conns
        if c.laddr
        and c.laddr.port == port
        and c.raddr
        and c.raddr.port in client_ports
        and c.status == psutil.CONN_ESTABLISHED
    }


@pytest.mark.integration
def test_node_and_consumers_through_different_proxies(tmp_path):
    """A TLS router with 2 proxies: a node behind one, consumers behind the other, all works."""
    port = free_port()
    url = f"wss://127.0.0.1:{port}/ws"
    env = isolated_env(tmp_path, url)
    router = Proc("proxy-router", ["router", "--loglevel", "warn", "--proxies", "2"], tmp_path, env).start()
    started = [router]
    try:
        wait_port(port, 60, router.proc)
        ca = str(tmp_path / "tls" / "ca.crt")
        cbconf = json.loads((tmp_path / "router" / "config.json").read_text())
        assert [w["type"] for w in cbconf["workers"]] == ["router", "proxy", "proxy"]

        def listening() -> set[int]:
            return {
                c.pid
                for c in psutil.net_connections(kind="tcp")
                if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
            }

        listeners = wait_for(
            lambda: len(listening()) == 2 and listening(), 60, "each proxy worker should listen on the shared port"
        )
        started.append(Proc("proxy-hub", ["hub"], tmp_path, env).start())
        node = Proc("proxy-node", ["serve", "weather"], tmp_path, env).start()
        started.append(node)

        def listed(c):
            try:
                return "weather" in {n["name"] for n in c.nodes()}
            except ClientError:
                return False

        with connect(url, home=str(tmp_path), tls_ca=ca, timeout=10) as c:
            wait_for(lambda: listed(c), 40, "node not listed through the proxies:\n" + node.log())
        node_proxy = proxy_of(port, node.pid)
        assert len(node_proxy) == 1 and node_proxy <= listeners, node_proxy
        other = None
        clients = []
        try:
            for _ in range(40):  # the kernel spreads connections over the proxies
                c = connect(url, home=str(tmp_path), tls_ca=ca, timeout=10)
                clients.append(c)
                mine = proxy_of(port, os.getpid()) - node_proxy
                if mine:
                    other = c
                    break
            assert other is not None, "no consumer connection reached the second proxy"
            fields, _ = other.fields("weather")
            r = other.get_data("weather", sorted(fields), -86400, 0)
            assert len(r.timelines["weather"].t) > 100
            with connect(
                url, home=str(tmp_path), tls_ca=ca, serializer="json", binary=False
            ) as cj:  # proxies transcode serializers too
                lj = cj.call("consumer.weather.get_data", sorted(fields)[:1], -86400, 0)
            name = sorted(fields)[0]
            np.testing.assert_array_equal(np.asarray(lj["data"][name], float), r.data[name][: len(lj["data"][name])])
        finally:
            for c in clients:
                c.close()
        with pytest.raises(AuthenticationFailed):
            connect(url, user="consumer", secret="not-the-secret", tls_ca=ca, home=str(tmp_path), timeout=10)
        server = credentials.read(tmp_path)["server"]
        hijack = subprocess.run(  # the authorizer still guards names behind proxies
            [sys.executable, "-m", "sisock", "serve", "weather", "--user", server["authid"]],
            env={**env, "SISOCK_SECRET": server["secret"]},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert hijack.returncode == 3, hijack.stdout[-2000:] + hijack.stderr[-2000:]
    finally:
        for p in reversed(started):
            p.stop()


@pytest.mark.unit
def test_with_proxies_carries_every_public_transport(tmp_path):
    """Each proxy listens on all the router's public transports; the largest message size is kept."""
    base = rendered(tmp_path, "ws://127.0.0.1:9000/ws")
    extra = {
        "type": "rawsocket",
        "endpoint": {"type": "tcp", "port": 9001},
        "options": {"max_message_size": 2**20},
        "auth": {"wampcra": {"users": {}}},
    }
    base["workers"][0]["transports"].append(extra)
    config = with_proxies(base, 2, tmp_path)
    for proxy in config["workers"][1:]:
        assert [t["endpoint"]["port"] for t in proxy["transports"]] == [9000, 9001]
        assert all(t["endpoint"]["shared"] for t in proxy["transports"])
    (backend,) = config["workers"][0]["transports"]
    assert backend["options"]["max_message_size"] == 64 * 2**20
