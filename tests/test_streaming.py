"""A 20 M-sample float64 fetch streamed through the real router and rebuilt exactly."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from conftest import listed, wait_for
from sisock.protocol import FieldSpec
from sisock.archive.writer import ArchiveWriter
from sisock.client import connect

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
            w.append("big", t[i:i + 2_000_000], {"x": x[i:i + 2_000_000]})
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
    print(f"\n20 M samples streamed in {elapsed:.2f} s ({result_bytes / elapsed / 1e6:.0f} MB/s), "
          f"{r.parts} parts, client peak {peak / 2**20:.0f} MiB for {result_bytes / 2**20:.0f} MiB")
    assert peak < 1.3 * result_bytes, "the client must not hold the result twice"
