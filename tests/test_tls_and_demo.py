"""A TLS router and the demo command, each in its own SISOCK_HOME and port."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from conftest import REPO, Proc, free_port, wait_for, wait_port
from sisock.client import ClientError, connect

pytestmark = pytest.mark.timeout(180)


def isolated_env(home, url) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISOCK_", "WAMP_"))}
    env.update(SISOCK_HOME=str(home), SISOCK_ROUTER_URL=url)
    return env


def test_tls_router(tmp_path):
    """A wss:// router serves verified TLS; clients without the CA are refused."""
    port = free_port()
    url = f"wss://127.0.0.1:{port}/ws"
    env = isolated_env(tmp_path, url)
    router = Proc("tls-router", ["router", "--loglevel", "warn"], tmp_path, env).start()
    hub = None
    try:
        wait_port(port, 30, router.proc)
        ca = tmp_path / "tls" / "ca.crt"
        assert ca.exists()
        hub = Proc("tls-hub", ["hub"], tmp_path, env).start()

        def nodes():
            try:
                with connect(url, home=str(tmp_path), tls_ca=str(ca), timeout=3) as c:
                    return c.nodes() == []
            except ClientError:
                return False
        wait_for(nodes, 15, "no TLS session with the hub:\n" + hub.log())
        with pytest.raises(ClientError):
            connect(url, home=str(tmp_path), tls_ca=str(REPO / "tests" / "data" / "other-ca.crt"),
                    timeout=3)
    finally:
        if hub:
            hub.stop()
        router.stop()


def test_demo_check(tmp_path):
    """`sisock demo --check` brings the whole stack up and the hub lists every example node."""
    port = free_port()
    env = isolated_env(tmp_path, f"ws://127.0.0.1:{port}/ws")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "sisock", "demo", "--check", "--timeout", "90"],
                         env=env, capture_output=True, text=True, timeout=150, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"ws://127.0.0.1:{port}/ws" in out.stdout
    for name in ("weather", "sensors", "archive", "modbus_sim"):
        assert f"- {name}:" in out.stdout
    print(f"\ndemo up and verified in {time.monotonic() - t0:.1f} s")
