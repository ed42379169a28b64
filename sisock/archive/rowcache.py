"""Bounded caches of summary rows, shared by a reader's threads.

* :class:`ByteLRU`: a least-recently-used map bounded by the bytes of its
  values (the reader's per-file summary tables).
* :class:`RunRows`: the summary rows of a run of consecutive complete files,
  concatenated (a long query reads one such run per timeline).
  :class:`RunCache` keeps them per ``(timeline, level, fields)``, extends a
  cached run when a query reaches further, and drops runs when the budget
  is exceeded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sisock.core.downsample import BucketStats


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
    return sum(getattr(stats, a).nbytes for a in
               ("n", "count", "sum", "min", "max", "first", "last", "min_first"))


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
        i0, i1 = (int(x) for x in np.searchsorted(self.seqs, [first_seq, last_seq]))
        a, b = int(self.offsets[i0]), int(self.offsets[i1 + 1])
        return self.bucket[a:b], self.stats.take(slice(a, b))


class RunCache:
    """Concatenated rows per ``(timeline, level, fields)``, one run each.

    Parameters
    ----------
    max_bytes : int
        Memory budget of all runs together.
    """

    def __init__(self, max_bytes: int) -> None:
        self._runs = ByteLRU(max_bytes)

    def rows(self, key: Hashable, complete_seqs: np.ndarray, first_seq: int, last_seq: int,
             load) -> tuple[np.ndarray, BucketStats]:
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
        want0, want1 = (int(x) for x in np.searchsorted(complete_seqs, [first_seq, last_seq]))
        run: RunRows | None = self._runs.pop(key)
        if run is not None:
            have0, have1 = (int(x) for x in np.searchsorted(complete_seqs, [run.seqs[0], run.seqs[-1]]))
            still_valid = (have1 < complete_seqs.size
                           and np.array_equal(complete_seqs[have0:have1 + 1], run.seqs))
            if not still_valid or want1 < have0 - 1 or want0 > have1 + 1:  # stale, or disjoint
                run = None
        if run is None:
            run = load(complete_seqs[want0:want1 + 1])
        else:
            if want0 < have0:
                run = RunRows.join(load(complete_seqs[want0:have0]), run)
            if want1 > have1:
                run = RunRows.join(run, load(complete_seqs[have1 + 1:want1 + 1]))
        self._runs.put(key, run, run.nbytes)
        return run.rows_of(first_seq, last_seq)
