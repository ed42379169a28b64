"""A TLS router and the demo command, each in its own SISOCK_HOME and port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, Proc, free_port, wait_for, wait_port
from sisock.client import ClientError, RouterUnreachable, connect

pytestmark = pytest.mark.timeout(180)


def isolated_env(home, url) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SISOCK_", "WAMP_"))}
    env.update(SISOCK_HOME=str(home), SISOCK_ROUTER_URL=url)
    return env


def test_tls_router(tmp_path):
    """A wss:// router serves verified TLS (WebSocket and RawSocket); a wrong CA is refused."""
    port = free_port()
    url = f"wss://127.0.0.1:{port}/ws"
    env = isolated_env(tmp_path, url)
    router = Proc("tls-router", ["router", "--loglevel", "warn"], tmp_path, env).start()
    hub = None
    try:
        wait_port(port, 30, router.proc)
        ca = tmp_path / "tls" / "ca.crt"
        assert ca.exists()
        # the hub speaks RawSocket over TLS (rss://), the clients below both
        hub = Proc("tls-hub", ["hub"], tmp_path, isolated_env(tmp_path, f"rss://127.0.0.1:{port}")).start()

        def nodes():
            try:
                with connect(url, home=str(tmp_path), tls_ca=str(ca), timeout=3) as c:
                    return c.nodes() == []
            except ClientError:
                return False

        wait_for(nodes, 15, "no TLS session with the hub:\n" + hub.log())
        t0 = time.monotonic()
        with pytest.raises(RouterUnreachable):  # certificate not signed by that CA
            connect(url, home=str(tmp_path), tls_ca=str(REPO / "tests" / "data" / "other-ca.crt"), timeout=60)
        assert time.monotonic() - t0 < 30, "a TLS refusal must not wait for the timeout"
        with connect(url, home=str(tmp_path), tls_ca=str(ca), timeout=5) as c:
            assert c.nodes() == []  # and the right CA still works
        # RawSocket over TLS on the same port: verified the same way
        rss = f"rss://127.0.0.1:{port}"
        with connect(rss, home=str(tmp_path), tls_ca=str(ca), timeout=5) as c:
            assert c.nodes() == []
            assert "rawsocket" in type(c._session.transport).__module__
        with pytest.raises(RouterUnreachable):
            connect(rss, home=str(tmp_path), tls_ca=str(REPO / "tests" / "data" / "other-ca.crt"), timeout=5)
    finally:
        if hub:
            hub.stop()
        router.stop()


def test_demo_check(tmp_path):
    """`sisock demo --check` brings the whole stack up and the hub lists every example node."""
    port = free_port()
    env = isolated_env(tmp_path, f"ws://127.0.0.1:{port}/ws")
    t0 = time.monotonic()
    web_port = free_port()
    out = subprocess.run(
        [sys.executable, "-m", "sisock", "demo", "--check", "--timeout", "90", "--web-port", str(web_port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    summary = [line for line in out.stdout.splitlines() if not line.startswith("sisock demo:")]
    assert summary[0] == f"sisock dashboard: http://127.0.0.1:{web_port}/", out.stdout
    assert f"ws://127.0.0.1:{port}/ws" in out.stdout
    for name in ("weather", "sensors", "archive", "modbus_sim"):
        assert f"- {name}:" in out.stdout
    print(f"\ndemo up and verified in {time.monotonic() - t0:.1f} s")


def test_demo_stops_everything_on_sigterm(tmp_path):
    """SIGTERM to `sisock demo` stops every child, crossbar workers included."""
    import signal

    import psutil

    port = free_port()
    env = isolated_env(tmp_path, f"ws://127.0.0.1:{port}/ws")
    log = open(tmp_path / "demo.out", "w")
    demo = subprocess.Popen(
        [sys.executable, "-m", "sisock", "demo", "--timeout", "90", "--web-port", str(free_port())],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        wait_for(lambda: "Press Ctrl-C" in (tmp_path / "demo.out").read_text(), 120, "demo never came up")

        def ours():
            found = []
            for p in psutil.process_iter(["pid"]):
                try:
                    if p.pid != demo.pid and p.environ().get("SISOCK_HOME") == str(tmp_path):
                        found.append(p)
                except (psutil.Error, OSError):
                    pass
            return found

        children = ours()
        assert len(children) >= 6
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(30) == 0
        wait_for(lambda: not ours(), 15, f"left running: {[p.cmdline() for p in ours()]}")
    finally:
        if demo.poll() is None:
            demo.kill()
        log.close()


@pytest.mark.unit
def test_demo_archive_is_rewritten_when_stale(tmp_path, monkeypatch):
    """The demo archive is written on first use, kept while fresh, rewritten once stale
    (so the dashboard's last-hour default view shows it on every `make run`)."""
    from sisock.cli import demo, generate

    calls = []

    def fake_generate(directory, **kw):
        calls.append(directory)
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / f"20260101-000000-{len(calls):06d}.h5").write_bytes(b"x")

    monkeypatch.setattr(generate, "generate", fake_generate)
    d = demo.demo_archive(tmp_path)
    assert len(calls) == 1 and len(list(d.glob("*.h5"))) == 1
    demo.demo_archive(tmp_path)
    assert len(calls) == 1  # fresh: kept
    old = time.time() - demo.DEMO_ARCHIVE_MAX_AGE - 60
    for f in d.glob("*.h5"):
        os.utime(f, (old, old))
    demo.demo_archive(tmp_path)
    assert len(calls) == 2 and [f.name for f in d.glob("*.h5")] == ["20260101-000000-000002.h5"]
