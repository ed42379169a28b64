"""Tests of sisock.core.downsample against a plain brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sisock.core.protocol import METHODS
from sisock.core.downsample import (
    BucketStats,
    bin_index,
    downsample,
    downsample_columns,
    finish,
    reduce_buckets,
    sample_stats,
)
from sisock.core.errors import BadArgument
from sisock.core.protocol import check_method, check_min_stride


def ref_bin(t: float, s: float) -> int:
    """Bin of ``t``: the k with k*s <= t < (k+1)*s (float products)."""
    k = math.floor(t / s)
    while k * s > t:
        k -= 1
    while (k + 1) * s <= t:
        k += 1
    return k


def reference(t, y, s, method):
    """Brute-force downsampling written as plainly as possible."""
    bins: dict[int, list[float]] = {}
    for ti, yi in zip(t, y):
        bins.setdefault(ref_bin(ti, s), []).append(float(yi))
    out_t, out_v = [], []
    for k in sorted(bins):
        vals = bins[k]
        good = [v for v in vals if not math.isnan(v)]
        if method == "minmax":
            if good:
                lo, hi = min(good), max(good)
                pair = [lo, hi] if vals.index(lo) <= vals.index(hi) else [hi, lo]
            else:
                pair = [math.nan, math.nan]
            out_t += [k * s + 0.25 * s, k * s + 0.75 * s]
            out_v += pair
            continue
        out_t.append((k + 0.5) * s)
        if not good:
            out_v.append(math.nan)
        elif method == "mean":
            out_v.append(sum(good) / len(good))
        elif method == "min":
            out_v.append(min(good))
        elif method == "max":
            out_v.append(max(good))
        elif method == "first":
            out_v.append(good[0])
        elif method == "last":
            out_v.append(good[-1])
    return np.array(out_t), np.array(out_v)


values_st = st.one_of(
    st.just(math.nan),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([0.0, 1.0, -1.0, 2.0]),
)


@st.composite
def series(draw):
    """Strictly increasing times with values that include NaN and repeats."""
    n = draw(st.integers(0, 60))
    t0 = draw(st.sampled_from([0.0, 1.7e9, 12345.678]))
    steps = draw(st.lists(st.floats(1e-3, 50.0), min_size=n, max_size=n))
    t = t0 + np.cumsum(steps) if n else np.zeros(0)
    t = np.unique(t)
    y = np.array(draw(st.lists(values_st, min_size=t.size, max_size=t.size)), float)
    return t, y


@settings(max_examples=150, deadline=None)
@given(series(), st.sampled_from([0.25, 1.0, 3.0, 7.5, 16.0, 0.1, 100.0]), st.sampled_from(METHODS))
def test_matches_bruteforce(data, stride, method):
    """Every method equals the brute-force reference (NaN-aware)."""
    t, y = data
    got_t, got_v = downsample(t, y, stride, method)
    ref_t, ref_v = reference(t, y, stride, method)
    np.testing.assert_array_equal(got_t, ref_t)
    if method == "mean":
        np.testing.assert_allclose(got_v, ref_v, rtol=1e-12, atol=1e-9)
    else:
        np.testing.assert_array_equal(got_v, ref_v)


@settings(max_examples=100, deadline=None)
@given(series(), st.sampled_from([0.5, 1.0, 3.0, 10.0]))
def test_spacing_rule(data, stride):
    """Successive outputs are at least stride apart (minmax: pairs within a bin)."""
    t, y = data
    for method in ("mean", "min", "max", "first", "last"):
        out_t, _ = downsample(t, y, stride, method)
        assert np.all(np.diff(out_t) >= stride * (1 - 1e-12))
    out_t, _ = downsample(t, y, stride, "minmax")
    assert out_t.size % 2 == 0
    centres = (out_t[0::2] + out_t[1::2]) / 2
    assert np.all(np.diff(centres) >= stride * (1 - 1e-12))
    np.testing.assert_allclose(out_t[1::2] - out_t[0::2], stride / 2)


def test_epoch_alignment_and_centre_stamps():
    """Bins are floor(t/stride) and stamped at their centre."""
    t = np.array([10.0, 10.9, 11.0, 14.2])
    y = np.array([1.0, 2.0, 3.0, 4.0])
    out_t, out_v = downsample(t, y, 2.0, "mean")
    np.testing.assert_array_equal(out_t, [11.0, 15.0])
    np.testing.assert_array_equal(out_v, [2.0, 4.0])


def test_all_nan_bin_gives_nan_and_empty_bins_are_absent():
    """A bin with only NaN keeps a NaN sample; a bin with no sample gives nothing."""
    t = np.array([0.5, 1.5, 1.7, 5.5])
    y = np.array([1.0, np.nan, np.nan, 2.0])
    for method in ("mean", "min", "max", "first", "last"):
        out_t, out_v = downsample(t, y, 1.0, method)
        np.testing.assert_array_equal(out_t, [0.5, 1.5, 5.5])
        assert out_v[0] == 1.0 and math.isnan(out_v[1]) and out_v[2] == 2.0
    out_t, out_v = downsample(t, y, 1.0, "minmax")
    assert out_t.size == 6 and np.isnan(out_v[2:4]).all()


def test_first_last_skip_nan():
    """first/last are the first/last non-NaN values of a bin."""
    t = np.arange(5.0) * 0.1
    y = np.array([np.nan, 3.0, 1.0, 2.0, np.nan])
    assert downsample(t, y, 1.0, "first")[1][0] == 3.0
    assert downsample(t, y, 1.0, "last")[1][0] == 2.0


def test_minmax_order_follows_occurrence():
    """minmax puts whichever of min and max came first first."""
    t = np.arange(6.0)
    y = np.array([5.0, 9.0, 1.0, 1.0, 9.0, 3.0])
    _, v = downsample(t, y, 3.0, "minmax")
    np.testing.assert_array_equal(v, [9.0, 1.0, 1.0, 9.0])


def test_bool_is_zero_one():
    """bool fields aggregate as 0/1: mean is the fraction that is true."""
    t = np.arange(8.0)
    y = np.array([True, False, False, False, True, True, True, False])
    _, v = downsample(t, y, 4.0, "mean")
    np.testing.assert_array_equal(v, [0.25, 0.75])
    _, v = downsample(t, y, 4.0, "max")
    assert v.dtype == np.float64 and list(v) == [1.0, 1.0]


def test_strings_never_crash():
    """String fields: first/last non-empty; minmax gives (first, last); others first."""
    t = np.arange(6.0)
    y = np.array(["", "a", "b", "c", "", ""])
    _, v = downsample(t, y, 3.0, "last")
    assert list(v) == ["b", "c"]
    for method in ("mean", "min", "max", "first"):
        assert list(downsample(t, y, 3.0, method)[1]) == ["a", "c"]
    assert list(downsample(t, y, 3.0, "minmax")[1]) == ["a", "b", "c", "c"]


def test_columns_share_times():
    """All fields of one timeline come out on the same time axis."""
    t = np.arange(10.0)
    cols = {"x": np.arange(10.0), "flag": np.arange(10) % 2 == 0, "s": np.array(list("abcdefghij"))}
    tt, out = downsample_columns(t, cols, 4.0, "minmax")
    assert set(out) == set(cols)
    assert all(len(v) == len(tt) == 6 for v in out.values())


def test_empty_input():
    """No samples gives empty outputs for every method."""
    for method in METHODS:
        tt, v = downsample(np.zeros(0), np.zeros(0), 1.0, method)
        assert tt.size == 0 and v.size == 0


def test_bad_arguments_name_the_argument():
    """Bad method and bad strides raise BadArgument naming the argument."""
    with pytest.raises(BadArgument, match="'method'"):
        check_method("median")
    for bad in (-1.0, 1e-9, math.inf, math.nan, "2", True):
        with pytest.raises(BadArgument, match="'min_stride'"):
            check_min_stride(bad)
    assert check_min_stride(None) is None and check_min_stride(2) == 2.0
    assert check_min_stride(0) is None  # sisock 0.x callers: 0 means "no downsampling"
    with pytest.raises(BadArgument, match="'min_stride'"):
        downsample_columns(np.arange(3.0), {"x": np.arange(3.0)}, 0, "mean")
    with pytest.raises(BadArgument, match="'method'"):
        downsample(np.arange(3.0), np.arange(3.0), 1.0, "avg")


def test_bin_index_is_exact_for_dyadic_multiples():
    """bin_index agrees with integer arithmetic on bucket indices of width 2^p."""
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(1.6e9, 1.7e9, 20000))
    for w, m in ((16.0, 3), (256.0, 7), (4096.0, 5)):
        kb = bin_index(t, w)
        np.testing.assert_array_equal(bin_index(t, m * w), np.floor_divide(kb, m))


@settings(max_examples=100, deadline=None)
@given(series(), st.sampled_from([1.0, 2.0, 4.0]), st.integers(1, 6), st.sampled_from(METHODS))
def test_reduce_buckets_equals_direct(data, width, factor, method):
    """Stats of buckets of width w, combined into bins of m*w, equal direct downsampling."""
    t, y = data
    stride = width * factor
    kb = bin_index(t, width)
    ub, bst = reduce_buckets(kb, sample_stats(y))
    # round-trip through the stored table layout as the archive does
    bst = BucketStats.from_table(bst.to_table())
    bins, combined = reduce_buckets(np.floor_divide(ub, factor), bst)
    got_t, got_v = finish(bins, combined, stride, method)
    ref_t, ref_v = downsample(t, y, stride, method)
    np.testing.assert_array_equal(got_t, ref_t)
    if method == "mean":
        np.testing.assert_allclose(got_v[:, 0], ref_v, rtol=1e-12, atol=1e-9)
    else:
        np.testing.assert_array_equal(got_v[:, 0], ref_v)


def test_unsorted_times_rejected():
    """Decreasing times are an error, not a silent wrong answer."""
    with pytest.raises(BadArgument):
        downsample(np.array([2.0, 1.0]), np.array([1.0, 2.0]), 1.0)
