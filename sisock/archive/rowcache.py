"""Bounded caches of summary rows, shared by a reader's threads.

* :class:`ByteLRU`: a least-recently-used map bounded by the bytes of its
  values (the reader's per-file summary tables).
* :class:`RunRows`: the summary rows of a run of consecutive complete files,
  concatenated (a long query reads one such run per timeline).
  :class:`RunCache` keeps them per ``(timeline, level, fields)``, extends a
  cached run when a query reaches further, and drops runs when the budget
  is exceeded.
* A run also keeps its last few *reductions*: its rows combined per output
  bin of a given stride (``bucket // factor``).  A downsampled query over
  part of the run (a dashboard's sliding window: same stride, start moving)
  takes the bins wholly inside its rows from the reduction and combines only
  the rows of the (at most two) bins its rows cut, instead of combining a
  year of rows again.  The result is the same, bit for bit: a bin's rows are
  combined in the same order either way.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sisock.core.downsample import BucketStats, reduce_buckets


class ByteLRU:
    """A thread-safe LRU map whose values' total size stays under ``max_bytes``.

    Parameters
    ----------
    max_bytes : int
        Budget; the most recent entry is kept even if it alone exceeds it.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.nbytes = 0

    def get(self, key: Hashable) -> Any:
        """The value of ``key`` (now most recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def pop(self, key: Hashable) -> Any:
        """Remove and return the value of ``key``, or None."""
        with self._lock:
            item = self._items.pop(key, None)
            if item is None:
                return None
            self.nbytes -= item[1]
            return item[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Store ``value`` (of about ``nbytes`` bytes), evicting the oldest entries."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self._items[key] = (value, int(nbytes))
            self.nbytes += int(nbytes)
            while self.nbytes > self.max_bytes and len(self._items) > 1:
                _, (_, size) = self._items.popitem(last=False)
                self.nbytes -= size

    def __len__(self) -> int:
        return len(self._items)


def stats_nbytes(stats: BucketStats) -> int:
    """Bytes held by bucket statistics."""
    return sum(getattr(stats, a).nbytes for a in ("n", "count", "sum", "min", "max", "first", "last", "min_first"))


@dataclass
class RunRows:
    """Summary rows of a run of consecutive complete files, concatenated.

    Attributes
    ----------
    seqs : numpy.ndarray
        Sequence numbers of the files, in order.
    offsets : numpy.ndarray
        First row of each file, plus the total (``len(seqs) + 1`` values).
    bucket : numpy.ndarray
        Bucket index of each row.
    stats : BucketStats
        Statistics of each row (columns: the requested fields).
    """

    seqs: np.ndarray
    offsets: np.ndarray
    bucket: np.ndarray
    stats: BucketStats
    #: ``(factor, need) -> _Reduction``, the most recent :data:`REDUCTIONS_KEPT`.
    reductions: OrderedDict = field(default_factory=OrderedDict, repr=False, compare=False)

    @staticmethod
    def join(a: RunRows, b: RunRows) -> RunRows:
        """Rows of ``a`` then rows of ``b`` (adjacent runs of files)."""
        return RunRows(
            np.concatenate((a.seqs, b.seqs)),
            np.concatenate((a.offsets[:-1], a.offsets[-1] + b.offsets)),
            np.concatenate((a.bucket, b.bucket)),
            BucketStats.concat([a.stats, b.stats], a.stats.nfields),
        )

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self.seqs.nbytes + self.offsets.nbytes + self.bucket.nbytes + stats_nbytes(self.stats)

    def rows_of(self, first_seq: int, last_seq: int) -> tuple[np.ndarray, BucketStats]:
        """Rows of the files ``first_seq`` to ``last_seq`` (both in the run)."""
        a, b = self._row_range(first_seq, last_seq)
        return self.bucket[a:b], self.stats.take(slice(a, b))

    def _row_range(self, first_seq: int, last_seq: int) -> tuple[int, int]:
        i0, i1 = (int(x) for x in np.searchsorted(self.seqs, [first_seq, last_seq]))
        return int(self.offsets[i0]), int(self.offsets[i1 + 1])

    def reduced_of(
        self, first_seq: int, last_seq: int, factor: int, need: tuple[str, ...]
    ) -> tuple[np.ndarray, BucketStats]:
        """Rows of the files ``first_seq`` to ``last_seq`` combined per bin ``bucket // factor``.

        Equal, bit for bit, to ``reduce_buckets(bucket // factor, stats, need)``
        over :meth:`rows_of` (counts and sums always computed, so the rows can
        be combined again); the bins wholly inside those rows come from the
        run's reduction for ``(factor, need)`` (made on first use).
        """
        a, b = self._row_range(first_seq, last_seq)
        if b <= a:
            return np.zeros(0, np.int64), BucketStats.empty(self.stats.nfields)
        # counts too: they tell which rows hold a value when the caller combines these
        # rows with others (first, last and minmax look for the first or last valid row)
        need = tuple(sorted(set(need) | {"count"}))
        red = self._reduction(int(factor), need)
        # groups holding the first and the last row; whole ones come from the reduction
        g0 = int(np.searchsorted(red.starts, a, side="right")) - 1
        g1 = int(np.searchsorted(red.starts, b - 1, side="right")) - 1
        bins: list[np.ndarray] = []
        stats: list[BucketStats] = []

        def direct(lo: int, hi: int) -> None:  # rows of one bin cut by [a, b)
            out, st = reduce_buckets(self.bucket[lo:hi] // factor, self.stats.take(slice(lo, hi)), need)
            bins.append(out)
            stats.append(st)

        whole0, whole1 = g0, g1 + 1
        if red.starts[g0] < a:  # the first bin is cut by the range
            direct(a, min(int(red.ends[g0]), b))
            whole0 = g0 + 1
        last_cut = g1 >= whole0 and red.ends[g1] > b
        if last_cut:
            whole1 = g1
        if whole1 > whole0:
            bins.append(red.bins[whole0:whole1])
            stats.append(red.stats.take(slice(whole0, whole1)))
        if last_cut:
            direct(int(red.starts[g1]), b)
        return np.concatenate(bins), BucketStats.concat(stats, self.stats.nfields)

    def _reduction(self, factor: int, need: tuple[str, ...]) -> _Reduction:
        key = (factor, need)
        red = self.reductions.get(key)
        if red is None:
            bins = self.bucket // factor
            out, stats = reduce_buckets(bins, self.stats, need)
            starts = np.searchsorted(bins, out, side="left")
            ends = np.append(starts[1:], bins.size)
            red = _Reduction(out, stats, starts, ends)
            self.reductions[key] = red
            while len(self.reductions) > REDUCTIONS_KEPT:
                self.reductions.popitem(last=False)
        return red


#: Reductions (strides x methods) a run keeps, the most recently made.  A
#: summary level answers a stride only when it holds at least 16 buckets per
#: output bin (:func:`~sisock.archive.summary.choose_stride`), so a reduction
#: has at most 1/16 of the run's rows: together they add at most a quarter
#: to the run's memory.
REDUCTIONS_KEPT = 4


@dataclass
class _Reduction:
    """A run's rows combined per output bin: the bins, their statistics, their row ranges."""

    bins: np.ndarray
    stats: BucketStats
    starts: np.ndarray
    ends: np.ndarray


class RunCache:
    """Concatenated rows per ``(timeline, level, fields)``, one run each.

    Parameters
    ----------
    max_bytes : int
        Memory budget of all runs together.
    """

    #: Locks striping the keys: one query at a time loads or extends the run of a key,
    #: while the others asking for it wait and then find it (a cold cache under
    #: concurrent identical queries loads each run once, not once per thread).
    STRIPES = 64

    def __init__(self, max_bytes: int) -> None:
        self._runs = ByteLRU(max_bytes)
        self._locks = [threading.RLock() for _ in range(self.STRIPES)]

    def rows(
        self, key: Hashable, complete_seqs: np.ndarray, first_seq: int, last_seq: int, load
    ) -> tuple[np.ndarray, BucketStats]:
        """Rows of the complete files ``first_seq..last_seq``.

        Parameters
        ----------
        key : hashable
            ``(timeline, level, fields)``.
        complete_seqs : numpy.ndarray
            Sequence numbers of every complete file with data on the
            timeline, in order (a cached run must be a slice of it).
        first_seq, last_seq : int
            The wanted run (both in ``complete_seqs``).
        load : callable
            ``load(seqs) -> RunRows`` reads the rows of some files.
        """
        with self._locks[hash(key) % self.STRIPES]:
            return self._run(key, complete_seqs, first_seq, last_seq, load).rows_of(first_seq, last_seq)

    def reduced(
        self,
        key: Hashable,
        complete_seqs: np.ndarray,
        first_seq: int,
        last_seq: int,
        load,
        factor: int,
        need: tuple[str, ...],
    ) -> tuple[np.ndarray, BucketStats]:
        """The rows of :meth:`rows` combined per bin ``bucket // factor`` (see
        :meth:`RunRows.reduced_of`; ``need`` as for
        :func:`~sisock.core.downsample.reduce_buckets`)."""
        with self._locks[hash(key) % self.STRIPES]:
            return self._run(key, complete_seqs, first_seq, last_seq, load).reduced_of(
                first_seq, last_seq, factor, need
            )

    def _run(self, key: Hashable, complete_seqs: np.ndarray, first_seq: int, last_seq: int, load) -> RunRows:
        want0, want1 = (int(x) for x in np.searchsorted(complete_seqs, [first_seq, last_seq]))
        # the cached run stays in the cache while this query reads or extends it (a
        # run takes tens of milliseconds to load; an extended run replaces it when done)
        cached: RunRows | None = self._runs.get(key)
        run = cached
        if run is not None:
            have0, have1 = (int(x) for x in np.searchsorted(complete_seqs, [run.seqs[0], run.seqs[-1]]))
            still_valid = have1 < complete_seqs.size and np.array_equal(complete_seqs[have0 : have1 + 1], run.seqs)
            if not still_valid or want1 < have0 - 1 or want0 > have1 + 1:  # stale, or disjoint
                run = None
        if run is None:
            run = load(complete_seqs[want0 : want1 + 1])
        else:
            if want0 < have0:
                run = RunRows.join(load(complete_seqs[want0:have0]), run)
            if want1 > have1:
                run = RunRows.join(run, load(complete_seqs[have1 + 1 : want1 + 1]))
        if run is not cached:
            self._runs.put(key, run, run.nbytes)
        return run
