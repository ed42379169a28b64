"""Summary levels: downsampled reads from summaries equal brute force on raw data."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sisock.archive.reader import ArchiveReader
from sisock.core.protocol import FieldSpec
from sisock.archive.summary import (
    LEVELS,
    MIN_BUCKETS_PER_BIN,
    WIDTHS,
    SummaryAccumulator,
    choose_stride,
    plan_cover,
    split_table,
)
from sisock.archive.writer import ArchiveWriter
from sisock.core.downsample import bin_index, downsample_columns, reduce_buckets, sample_stats
from sisock.core.protocol import METHODS

T0 = 1_700_000_000.0
SPECS = {"x": FieldSpec("number"), "y": FieldSpec("number"), "f": FieldSpec("bool")}


def brute(t, cols, start, end, min_stride, method):
    """Reference: select raw samples in [start, end) and downsample them directly."""
    s, _ = choose_stride(min_stride)
    sel = (t >= start) & (t < end)
    return downsample_columns(t[sel], {k: v[sel] for k, v in cols.items()}, s, method, (start, end))


def check_equal(res, ref, fields, method):
    """Times equal exactly; values exactly except the mean (float rounding)."""
    rt, rc = ref
    if rt.size == 0:
        assert res["timeline"] == {}
        return
    np.testing.assert_array_equal(res["timeline"]["a"]["t"], rt)
    for k in fields:
        if method == "mean":
            np.testing.assert_allclose(res["data"][k], rc[k], rtol=1e-9, atol=1e-9)
        else:
            np.testing.assert_array_equal(res["data"][k], rc[k])


def make_data(rng, n_chunks=6, span=40_000.0):
    """Irregular times over ``span`` seconds, with gaps, NaNs and a bool field."""
    parts = []
    t = T0 + rng.uniform(0, 100)
    for _ in range(n_chunks):
        n = int(rng.integers(1, 3000))
        dt = rng.choice([0.5, 1.0, 3.7, 20.0])
        parts.append(t + np.cumsum(rng.uniform(0.2, 1.0, n)) * dt)
        t = parts[-1][-1] + rng.choice([1.0, 500.0, 5000.0])
    t = np.concatenate(parts)
    t = t[t < T0 + span]
    x = rng.normal(size=t.size).round(2)
    x[rng.random(t.size) < 0.2] = np.nan
    y = rng.integers(-3, 3, t.size).astype(float)
    return t, {"x": x, "y": y, "f": rng.random(t.size) < 0.4}


def write(d, t, cols, rotate, batches, close=True):
    """Write in ``batches`` appends; leave the last file growing unless ``close``."""
    w = ArchiveWriter(d, rotate_seconds=rotate, flush_interval=0.0)
    w.define_timeline("a", SPECS)
    for chunk in np.array_split(np.arange(t.size), batches):
        if chunk.size:
            w.append("a", t[chunk], {k: v[chunk] for k, v in cols.items()})
    w.flush()
    if close:
        w.close()
    return w


def test_choose_stride_rule():
    """Rounded stride: a multiple of the coarsest level with w <= min_stride/16, < 6.25 % over."""
    for ms in np.geomspace(1.0, 1e7, 400):
        s, lvl = choose_stride(float(ms))
        if ms < MIN_BUCKETS_PER_BIN * WIDTHS[0]:
            assert lvl is None and s == ms
            continue
        w = WIDTHS[lvl]
        assert w <= ms / MIN_BUCKETS_PER_BIN
        assert lvl == len(WIDTHS) - 1 or WIDTHS[lvl + 1] > ms / MIN_BUCKETS_PER_BIN
        assert ms <= s < ms * (1 + 1 / MIN_BUCKETS_PER_BIN) and (s / w).is_integer()
    assert choose_stride(300.0) == (304.0, 0)


def test_accumulator_rows_equal_direct_buckets():
    """Incremental rows (fed in random chunks, then closed) equal bucket stats of all samples."""
    rng = np.random.default_rng(3)
    t, cols = make_data(rng)
    v = np.column_stack([cols["x"], cols["y"], cols["f"]]).astype(float)
    acc = SummaryAccumulator(3)
    got = [[] for _ in LEVELS]
    cuts = np.sort(rng.choice(t.size, 20, replace=False))
    for part in np.split(np.arange(t.size), cuts):
        for i, rows in enumerate(acc.add(t[part], v[part])):
            got[i].append(rows)
    for i, rows in enumerate(acc.close()):
        got[i].append(rows)
    for i, w in enumerate(WIDTHS):
        k, stt = split_table(np.concatenate(got[i]))
        kk, ref = reduce_buckets(bin_index(t, w), sample_stats(v))
        np.testing.assert_array_equal(k, kk)
        for name in ("n", "count", "min", "max", "first", "last", "min_first"):
            np.testing.assert_array_equal(getattr(stt, name), getattr(ref, name))
        np.testing.assert_allclose(stt.sum, ref.sum, rtol=1e-9, atol=1e-9)


def test_plan_cover_partitions_range():
    """Cover pieces tile [lo, hi) exactly once, in time order, using whole buckets."""
    rng = np.random.default_rng(5)
    for _ in range(200):
        lo = T0 + rng.uniform(0, 1e5)
        hi = lo + rng.uniform(0, 2e5)
        lvl = int(rng.integers(0, len(LEVELS)))
        cov = [math.inf] * len(LEVELS)
        if rng.random() < 0.5:  # growing file: coverage shrinks with the level
            edge = lo + rng.uniform(0, hi - lo)
            cov = [math.floor(edge / w) - int(rng.integers(0, 3)) for w in WIDTHS]
        pieces = plan_cover(lo, hi, lvl, cov)
        assert pieces[0].lo == lo and pieces[-1].hi == hi
        for a, b in zip(pieces, pieces[1:]):
            assert a.hi == b.lo
        for p in pieces:
            if p.level is not None:
                assert p.level <= lvl and p.k_hi <= cov[p.level]
                assert p.lo == p.k_lo * WIDTHS[p.level] and p.hi == p.k_hi * WIDTHS[p.level]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**31),
    rotate=st.sampled_from([3000.0, 7200.0, 86400.0]),
    close=st.booleans(),
    batches=st.integers(1, 7),
)
def test_summary_equals_bruteforce_property(tmp_path_factory, seed, rotate, close, batches):
    """Across several files and a growing file, every method equals brute force."""
    d = tmp_path_factory.mktemp("arch")
    rng = np.random.default_rng(seed)
    t, cols = make_data(rng)
    w = write(d, t, cols, rotate, batches, close)
    try:
        r = ArchiveReader(d)
        for _ in range(4):
            start = T0 + rng.uniform(-100, 20_000)
            end = start + rng.uniform(0, 40_000)
            ms = float(rng.choice([256.0, 300.0, 1111.0, 5000.0, 20_000.0]))
            for method in METHODS:
                res = r.read(list(SPECS), start, end, min_stride=ms, method=method)
                check_equal(res, brute(t, cols, start, end, ms, method), SPECS, method)
    finally:
        if not close:
            w.close()


def test_summary_exact_across_crashed_file(tmp_path):
    """A crashed file (summary rows of incomplete buckets missing) still gives exact results."""
    rng = np.random.default_rng(11)
    t, cols = make_data(rng, n_chunks=8)
    cut = t.size // 2
    w = ArchiveWriter(tmp_path, rotate_seconds=1e9, flush_interval=0.0)
    w.define_timeline("a", SPECS)
    w.append("a", t[:cut], {k: v[:cut] for k, v in cols.items()})
    w.flush()
    # simulate kill -9: close the HDF5 handle without summarising, drop the lock
    w._file.wf.close()
    w._file = None
    w._lock.release()
    w._closed = True
    w2 = ArchiveWriter(tmp_path, rotate_seconds=1e9, flush_interval=0.0)
    w2.define_timeline("a", SPECS)
    w2.append("a", t[cut:], {k: v[cut:] for k, v in cols.items()})
    w2.close()
    names = sorted(os.listdir(tmp_path))
    assert any(n.endswith(".crashed.h5") for n in names)
    r = ArchiveReader(tmp_path)
    for start, end in ((t[0], t[-1] + 1), (t[cut] - 3000.3, t[cut] + 7000.7), (T0 + 123.4, t[cut - 1] + 0.1)):
        for ms in (256.0, 1000.0, 4096.0 * 16):
            for method in METHODS:
                res = r.read(list(SPECS), start, end, min_stride=ms, method=method)
                check_equal(res, brute(t, cols, start, end, ms, method), SPECS, method)


def test_long_query_reads_few_rows(tmp_path):
    """A whole-range query with a large stride reads summary rows, not raw samples."""
    t = T0 + np.arange(0, 20 * 86400, 2.0)
    with ArchiveWriter(tmp_path, rotate_seconds=86400) as w:
        w.define_timeline("a", {"x": FieldSpec()})
        w.append("a", t, {"x": np.sin(t / 1000.0)})
    r = ArchiveReader(tmp_path)
    calls = []
    from sisock.archive import datafile

    orig = datafile.ReadableFile.read_t

    def spy(self, tl, i0, i1):
        calls.append(i1 - i0)
        return orig(self, tl, i0, i1)

    datafile.ReadableFile.read_t = spy
    try:
        res = r.read(["x"], t[0] + 0.5, t[-1], min_stride=(t[-1] - t[0]) / 2000)
    finally:
        datafile.ReadableFile.read_t = orig
    n = res["data"]["x"].size
    assert 1500 < n <= 2001
    assert sum(calls) < 200  # raw samples only at the range edges
    ref = downsample_columns(t[1:-1], {"x": np.sin(t[1:-1] / 1000.0)}, choose_stride((t[-1] - t[0]) / 2000)[0], "mean")
    np.testing.assert_allclose(res["data"]["x"], ref[1]["x"], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_small_stride_uses_raw_and_matches(tmp_path, method):
    """Below 16 x the finest level the stride is used exactly on raw samples."""
    rng = np.random.default_rng(2)
    t, cols = make_data(rng, n_chunks=3, span=3000.0)
    write(tmp_path, t, cols, 600.0, 3)
    res = ArchiveReader(tmp_path).read(list(SPECS), T0, T0 + 3000, min_stride=7.5, method=method)
    sel = (t >= T0) & (t < T0 + 3000)
    ref = downsample_columns(t[sel], {k: v[sel] for k, v in cols.items()}, 7.5, method, (T0, T0 + 3000))
    check_equal(res, ref, SPECS, method)
