"""Big fetches streamed through the real router and rebuilt exactly, over
WebSocket and RawSocket (the router speaks both on one port)."""

from __future__ import annotations

import os
import time
import tracemalloc

import numpy as np
import pytest

from conftest import listed, wait_for
from sisock.core.protocol import FieldSpec
from sisock.archive.writer import ArchiveWriter
from sisock.client import RemoteError, connect

pytestmark = pytest.mark.timeout(300)

N = 20_000_000
RATE = 1000.0


def expected(start: float) -> tuple[np.ndarray, np.ndarray]:
    """The times and values written into the big archive."""
    i = np.arange(N)
    return start + i / RATE, np.sin(i * 1e-3) + i * 1e-9


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory):
    """One field, 20 M float64 samples at 1 kHz, in one file."""
    d = tmp_path_factory.mktemp("big")
    start = float(np.floor(time.time() - N / RATE - 60))
    t, x = expected(start)
    with ArchiveWriter(d, rotate_seconds=1e9, rotate_bytes=2**40) as w:
        w.define_timeline("big", {"x": FieldSpec("number", "V", "test signal")})
        for i in range(0, N, 2_000_000):
            w.append("big", t[i : i + 2_000_000], {"x": x[i : i + 2_000_000]})
    return d, start


def test_20M_samples_streamed_exactly(stack, procs, big_archive):
    """The whole 20 M-sample range arrives in many parts, equal bit for bit, held ~once."""
    d, start = big_archive
    procs("hdf5", "serve", "hdf5", "--name", "big", "--archive", str(d))
    with connect(timeout=120) as c:
        wait_for(lambda: "big" in listed(c), 20, "big archive node never listed")
        tracemalloc.start()
        t0 = time.monotonic()
        r = c.get_data("big", ["x"], start, start + N / RATE + 1, progress=False)
        elapsed = time.monotonic() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    t, x = expected(start)
    assert r.parts > 100, "a 320 MB reply must be streamed in parts"
    np.testing.assert_array_equal(r.timelines["big"].t, t)
    np.testing.assert_array_equal(r.data["x"], x)
    result_bytes = t.nbytes + x.nbytes
    print(
        f"\n20 M samples streamed in {elapsed:.2f} s ({result_bytes / elapsed / 1e6:.0f} MB/s), "
        f"{r.parts} parts, client peak {peak / 2**20:.0f} MiB for {result_bytes / 2**20:.0f} MiB"
    )
    assert peak < 1.3 * result_bytes, "the client must not hold the result twice"


M = 3_000_000  # samples in the mid-size archive (48 MB of values and times)


@pytest.fixture(scope="module")
def mid_archive(tmp_path_factory):
    """One field, 3 M float64 samples at 1 kHz: about 180 parts of 256 KiB."""
    d = tmp_path_factory.mktemp("mid")
    start = float(np.floor(time.time() - M / RATE - 60))
    i = np.arange(M)
    with ArchiveWriter(d, rotate_seconds=1e9, rotate_bytes=2**40) as w:
        w.define_timeline("mid", {"x": FieldSpec("number", "V", "test signal")})
        w.append("mid", start + i / RATE, {"x": np.cos(i * 1e-3)})
    return d, start


def fetch_mid(url: str, name: str, start: float):
    """Fetch the whole mid archive from node ``name`` through ``url``; return the reply."""
    with connect(url, timeout=120) as c:
        wait_for(lambda: name in listed(c), 20, f"node {name} never listed")
        return c.get_data(name, ["x"], start, start + M / RATE + 1, progress=False)


def check_mid(r, start: float) -> None:
    """The mid archive arrived whole, in many parts, bit for bit."""
    i = np.arange(M)
    assert r.parts > 100, "a 48 MB reply must be streamed in parts"
    np.testing.assert_array_equal(r.timelines["mid"].t, start + i / RATE)
    np.testing.assert_array_equal(r.data["x"], np.cos(i * 1e-3))


def test_node_on_websocket_client_on_rawsocket(stack, procs, mid_archive):
    """A node speaking WebSocket streams to a client speaking RawSocket (rs://)."""
    d, start = mid_archive
    env = dict(os.environ, SISOCK_ROUTER_RAWSOCKET="no")  # ws:// URL, WebSocket only
    node = procs("hdf5-ws", "serve", "hdf5", "--name", "mid_ws", "--archive", str(d), env=env)
    r = fetch_mid(f"rs://127.0.0.1:{stack.port}", "mid_ws", start)
    check_mid(r, start)
    assert node.alive()


def test_node_on_rawsocket_client_on_websocket(stack, procs, mid_archive, monkeypatch):
    """A node speaking RawSocket (rs://) streams to a client speaking WebSocket, and
    refuses, with a clear error, a one-message reply over RawSocket's 16 MiB."""
    d, start = mid_archive
    env = dict(os.environ, SISOCK_ROUTER_URL=f"rs://127.0.0.1:{stack.port}")
    node = procs(
        "hdf5-rs", "serve", "hdf5", "--name", "mid_rs", "--archive", str(d), "--max-samples", str(4 * M), env=env
    )
    monkeypatch.setenv("SISOCK_ROUTER_RAWSOCKET", "no")
    with connect(timeout=60) as c:
        wait_for(lambda: "mid_rs" in listed(c), 20, "node mid_rs never listed")
        with pytest.raises(RemoteError, match="16 MiB") as err:
            c.get_data("mid_rs", ["x"], start, start + M / RATE + 1, stream=False)
        assert err.value.uri.endswith(".error.too_much_data")
        stride = err.value.min_stride  # named, as every too_much_data names one
        assert stride and f"min_stride >= {stride:g}" in str(err.value)
        fits = c.get_data("mid_rs", ["x"], start, start + M / RATE + 1, min_stride=stride, stream=False)
        assert 0 < len(fits.data["x"])
    r = fetch_mid(stack.url, "mid_rs", start)
    check_mid(r, start)
    assert node.alive()


def test_local_router_is_reached_over_rawsocket(stack, monkeypatch):
    """With a ws:// URL, programs sharing the router's SISOCK_HOME pick RawSocket by default."""
    monkeypatch.delenv("SISOCK_ROUTER_RAWSOCKET", raising=False)
    with connect(timeout=40) as c:  # RawSocket gets a quarter of it before WebSocket
        assert isinstance(c.nodes(), list)
        assert "rawsocket" in type(c._session.transport).__module__
    monkeypatch.setenv("SISOCK_ROUTER_RAWSOCKET", "no")
    with connect(timeout=10) as c:
        assert isinstance(c.nodes(), list)
        assert "websocket" in type(c._session.transport).__module__
