"""The run cache of concatenated summary rows, as several query threads use it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sisock.archive.rowcache import RunCache, RunRows
from sisock.core.downsample import BucketStats, sample_stats

pytestmark = pytest.mark.unit


def rows_of(seqs: np.ndarray) -> RunRows:
    """Two summary rows per file, bucket numbers ``2 * seq`` and ``2 * seq + 1``."""
    seqs = np.asarray(seqs, np.int64)
    bucket = np.repeat(2 * seqs, 2) + np.tile([0, 1], seqs.size)
    return RunRows(seqs, np.arange(seqs.size + 1, dtype=np.int64) * 2, bucket, sample_stats(bucket.astype(float)))


def test_cached_run_is_found_while_another_query_extends_it():
    """A query that extends the cached run leaves it in place while it loads.

    Another thread asking meanwhile for rows the run already holds gets them
    without loading anything (loading a year's run takes tens of
    milliseconds; under concurrent load every such miss was a slow call).
    """
    cache = RunCache(2**20)
    key = ("tl", 2, ("x",))
    complete = np.arange(1, 11, dtype=np.int64)
    loads: list[tuple[int, int]] = []

    def load(seqs):
        loads.append((int(seqs[0]), int(seqs[-1])))
        return rows_of(seqs)

    bucket, _ = cache.rows(key, complete, 1, 5, load)
    assert loads == [(1, 5)]
    assert bucket.tolist() == list(range(2, 12))

    seen_meanwhile = {}

    def load_extension(seqs):
        # runs while the first query extends the run: a second query arrives
        bucket, _ = cache.rows(key, complete, 2, 4, load)
        seen_meanwhile["bucket"] = bucket.tolist()
        return load(seqs)

    bucket, _ = cache.rows(key, complete, 1, 8, load_extension)
    assert seen_meanwhile["bucket"] == list(range(4, 10))
    assert loads == [(1, 5), (6, 8)], "the second query loaded rows the cache held"
    assert bucket.tolist() == list(range(2, 18))
    # the extended run replaced the shorter one
    bucket, _ = cache.rows(key, complete, 7, 8, load)
    assert loads == [(1, 5), (6, 8)]
    assert bucket.tolist() == [14, 15, 16, 17]


def test_stale_run_is_loaded_again():
    """A run whose files are no longer the complete ones is not served."""
    cache = RunCache(2**20)
    key = ("tl", 2, ("x",))
    loads = []

    def load(seqs):
        loads.append(seqs.tolist())
        return rows_of(seqs)

    cache.rows(key, np.array([1, 2, 3]), 1, 3, load)
    cache.rows(key, np.array([1, 3, 4]), 1, 3, load)  # file 2 vanished
    assert loads == [[1, 2, 3], [1, 3]]


def test_concurrent_queries_load_a_cold_run_once():
    """Queries for the same rows while one loads them wait for that load.

    A cold cache under many identical dashboard queries (a node just
    started) loads the run once instead of once per worker thread.
    """
    cache = RunCache(2**20)
    key = ("tl", 2, ("x",))
    complete = np.arange(1, 6, dtype=np.int64)
    loads = []
    second_done = threading.Event()
    results = {}

    def load(seqs):
        loads.append(threading.current_thread().name)
        return rows_of(seqs)

    def slow_load(seqs):
        loads.append(threading.current_thread().name)
        second.start()
        # the second query must not answer (nor load) before this load is done;
        # returning after the wait is the fallback if it never answers
        second_done.wait(2)
        return rows_of(seqs)

    def ask_second():
        results["second"] = cache.rows(key, complete, 1, 5, load)[0].tolist()
        second_done.set()

    second = threading.Thread(target=ask_second, name="second")
    first, _ = cache.rows(key, complete, 1, 5, slow_load)
    second.join(30)
    assert loads == ["MainThread"], "the second query loaded the rows too"
    assert results["second"] == first.tolist() == list(range(2, 12))


def random_run(rng: np.random.Generator, files: int) -> RunRows:
    """A run of ``files`` files of summary rows: random values with NaNs, buckets
    increasing with gaps, a file's first bucket sometimes its predecessor's last."""
    buckets, offsets, values = [], [0], []
    b = 1000
    for _ in range(files):
        n = int(rng.integers(0, 40))
        if buckets and n and rng.random() < 0.5:
            b -= 1  # the bucket a file boundary cut in two
        steps = rng.integers(1, 4, n)
        file_buckets = b + np.cumsum(steps) - steps[0] if n else np.zeros(0, np.int64)
        buckets.append(file_buckets)
        b = int(file_buckets[-1]) + 1 if n else b
        v = rng.normal(size=(n, 2))
        v[rng.random((n, 2)) < 0.2] = np.nan
        values.append(v)
        offsets.append(offsets[-1] + n)
    bucket = np.concatenate(buckets).astype(np.int64)
    return RunRows(
        np.arange(1, files + 1, dtype=np.int64),
        np.array(offsets, np.int64),
        bucket,
        sample_stats(np.concatenate(values)),
    )


def test_reduced_rows_equal_reducing_the_rows_bit_for_bit():
    """A run's rows combined per bin come out the same from its cached reduction
    as from combining the rows of the asked files directly, for every method's
    statistics, stride and sub-range (bins cut by the range included)."""
    from sisock.core.downsample import NEEDS, reduce_buckets

    rng = np.random.default_rng(3)
    run = random_run(rng, 30)
    for trial in range(300):
        first = int(rng.integers(1, 31))
        last = int(rng.integers(first, 31))
        factor = int(rng.choice([1, 2, 3, 7, 16]))
        method = str(rng.choice(list(NEEDS)))
        need = NEEDS[method]
        bucket, stats = run.rows_of(first, last)
        want_bins, want = reduce_buckets(bucket // factor, stats, need)
        got_bins, got = run.reduced_of(first, last, factor, need)
        context = f"trial {trial}: files {first}..{last}, factor {factor}, {method}"
        assert np.array_equal(got_bins, want_bins), context
        names = {"n", *need} | ({"min", "max"} if "min_first" in need else set())
        for name in names:
            assert np.array_equal(getattr(got, name), getattr(want, name), equal_nan=True), f"{context}: {name}"
        # reduced rows combine again as raw ones do (the reader joins them with the
        # rows of the files at the range's edges): two halves, then combined
        if last > first:
            mid = int(rng.integers(first, last))
            b1, s1 = run.reduced_of(first, mid, factor, need)
            b2, s2 = run.reduced_of(mid + 1, last, factor, need)
            joined_bins, joined = reduce_buckets(np.concatenate((b1, b2)), BucketStats.concat([s1, s2], 2), need)
            assert np.array_equal(joined_bins, want_bins), context
            for name in names - {"sum"}:  # sums: the halves are added, then their totals
                assert np.array_equal(getattr(joined, name), getattr(want, name), equal_nan=True), (
                    f"{context}, halves: {name}"
                )
    assert len(run.reductions) <= 4  # a run keeps a few reductions only
