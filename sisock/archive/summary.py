"""Summary levels: per-bucket statistics that make long downsampled reads cheap.

Every archive file stores, for each timeline and for each level ``p`` of
:data:`LEVELS`, a table of buckets of width ``2**p`` seconds aligned to the
epoch (bucket ``k`` covers ``[k * 2**p, (k + 1) * 2**p)``).  One row per
bucket holding at least one sample *of that file*::

    column 0        k, the bucket index
    column 1        n, samples in the bucket (NaN included)
    columns 2..     per numeric or bool field, in the timeline's field order:
                    count, sum, min, max, first, last, min_first
                    (see :class:`sisock.core.downsample.BucketStats`)

Rows are written by the writer as soon as a bucket is complete (a later
sample arrived), so the growing file is kept incrementally; when a file is
closed the incomplete buckets of every level are written too.  After a crash
the last rows may be missing; readers fill the gap from finer levels and,
below the finest level, from raw samples (:func:`plan_cover`).  String
fields have no summary: a downsampled query reads their raw samples.

Exactness versus bin alignment
------------------------------
An output bin can be answered exactly from buckets only if it is a union of
whole buckets.  Widths are powers of two (16 s to 4.55 h, factor 4 between
levels).  :func:`choose_stride` decides:

* ``min_stride >= 16 * 16 s`` (256 s): take the coarsest level whose width
  ``w <= min_stride / 16`` and round the stride *up* to a multiple of ``w``:
  ``s = ceil(min_stride / w) * w``.  ``s`` exceeds ``min_stride`` by less than
  1/16 (6.25 %), so the spacing rule holds; bins are ``floor(t / s)`` like any
  other query and the same query always gives the same bins.  A bin holds at
  least 16 buckets, so reading cost is at most ``16 * 4 = 64`` rows per output
  bin (plus the range edges, answered from finer levels and then raw samples).
* smaller ``min_stride``: raw samples are binned with ``s = min_stride``.

Results from summaries equal ``downsample(raw, s)`` exactly for count, min,
max, first, last and the minmax order, and to float rounding for the mean
(sums are added in a different order).

Storage cost: about ``(2 + 7 F) / 16 * 4 / 3`` float64 per sample-second of
the finest level, i.e. for a 1 Hz single-field timeline 0.75 values per
sample (6 bytes); negligible for faster timelines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sisock.core.downsample import BucketStats, bin_index, reduce_buckets, sample_stats

#: Level exponents: bucket widths are ``2**p`` seconds.
LEVELS = (4, 6, 8, 10, 12, 14)
#: Bucket widths in seconds.
WIDTHS = tuple(float(2**p) for p in LEVELS)
#: A summarised output bin covers at least this many buckets.
MIN_BUCKETS_PER_BIN = 16


def choose_stride(min_stride: float) -> tuple[float, int | None]:
    """Effective stride and summary level for a requested ``min_stride``.

    Parameters
    ----------
    min_stride : float
        Requested minimum spacing (> 0).

    Returns
    -------
    (float, int or None)
        The stride ``s`` to bin with and the index in :data:`LEVELS` of the
        level to read, or None to bin raw samples with ``s = min_stride``.
    """
    level = None
    for i, w in enumerate(WIDTHS):
        if w * MIN_BUCKETS_PER_BIN <= min_stride:
            level = i
    if level is None:
        return float(min_stride), None
    w = WIDTHS[level]
    return math.ceil(min_stride / w) * w, level


def table_width(nfields: int) -> int:
    """Number of columns of a summary table for ``nfields`` numeric fields."""
    return 2 + 7 * nfields


def split_table(table: np.ndarray) -> tuple[np.ndarray, BucketStats]:
    """Split a stored table into bucket indices and statistics."""
    table = np.asarray(table, dtype=np.float64)
    return table[:, 0].astype(np.int64), BucketStats.from_table(table[:, 1:])


def select_columns(stats: BucketStats, columns: list[int]) -> BucketStats:
    """Statistics of the given field columns; column -1 gives a field without data."""
    if columns == list(range(stats.nfields)):
        return stats
    rows = len(stats)
    nfields = len(columns)
    if not rows:
        return BucketStats.empty(nfields)
    safe = [max(c, 0) for c in columns]
    absent = np.array([c < 0 for c in columns], bool)
    return BucketStats(
        stats.n,
        np.where(absent, 0, stats.count[:, safe]),
        np.where(absent, 0.0, stats.sum[:, safe]),
        np.where(absent, np.nan, stats.min[:, safe]),
        np.where(absent, np.nan, stats.max[:, safe]),
        np.where(absent, np.nan, stats.first[:, safe]),
        np.where(absent, np.nan, stats.last[:, safe]),
        np.where(absent, True, stats.min_first[:, safe]),
    )


def make_table(k: np.ndarray, stats: BucketStats) -> np.ndarray:
    """Inverse of :func:`split_table`."""
    return np.column_stack([np.asarray(k, dtype=np.float64), stats.to_table()])


@dataclass
class _Pending:
    k: np.ndarray
    stats: BucketStats


@dataclass
class SummaryAccumulator:
    """Incremental summary rows of one timeline in one file (writer side).

    Feed samples in time order with :meth:`add`; it returns the rows of the
    buckets that became complete, per level.  :meth:`close` returns the rows
    of all incomplete buckets (the file is done).

    Parameters
    ----------
    nfields : int
        Number of numeric (number or bool) fields.
    """

    nfields: int
    _raw_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _raw_v: np.ndarray | None = None
    _queues: list[_Pending] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._raw_v = np.zeros((0, self.nfields))
        self._queues = [_Pending(np.zeros(0, np.int64), BucketStats.empty(self.nfields)) for _ in LEVELS[1:]]

    def add(self, t: np.ndarray, values: np.ndarray) -> list[np.ndarray]:
        """Add samples (times after every sample added so far).

        Parameters
        ----------
        t : numpy.ndarray
            ``(N,)`` times.
        values : numpy.ndarray
            ``(N, F)`` numeric values (bools as 0/1, NaN allowed).

        Returns
        -------
        list of numpy.ndarray
            For each level, the table rows (see module docstring) completed.
        """
        if len(t) == 0:
            return [np.zeros((0, table_width(self.nfields))) for _ in LEVELS]
        last = float(t[-1])
        return self._advance(np.asarray(t, float), np.asarray(values, float), last)

    def close(self) -> list[np.ndarray]:
        """Return rows for every incomplete bucket and reset."""
        out = self._advance(np.zeros(0), np.zeros((0, self.nfields)), math.inf)
        return out

    def _advance(self, t: np.ndarray, v: np.ndarray, last: float) -> list[np.ndarray]:
        """Rows of every bucket complete once ``last`` was seen; keep the rest pending."""
        t = np.concatenate((self._raw_t, t))
        v = np.concatenate((self._raw_v, v.reshape(-1, self.nfields)))
        out: list[np.ndarray] = []
        # finest level, from raw samples
        bucket = bin_index(t, WIDTHS[0])
        n_done = int((bucket < _limit(last, WIDTHS[0])).sum())  # samples of complete buckets
        k, st = reduce_buckets(bucket[:n_done], sample_stats(v[:n_done]))
        self._raw_t, self._raw_v = t[n_done:], v[n_done:]
        out.append(make_table(k, st))
        # each coarser level, from the rows the finer level completed
        for i in range(1, len(LEVELS)):
            pending = self._queues[i - 1]
            child_bucket = np.concatenate((pending.k, k))
            child_stats = BucketStats.concat([pending.stats, st], self.nfields)
            factor = 2 ** (LEVELS[i] - LEVELS[i - 1])
            parent = np.floor_divide(child_bucket, factor)
            n_done = int((parent < _limit(last, WIDTHS[i])).sum())  # child rows of complete parents
            k, st = reduce_buckets(parent[:n_done], child_stats.take(slice(0, n_done)))
            self._queues[i - 1] = _Pending(child_bucket[n_done:], child_stats.take(slice(n_done, None)))
            out.append(make_table(k, st))
        return out


def _limit(last: float, width: float) -> float:
    """Buckets with index below this are complete once ``last`` was seen."""
    if math.isinf(last):
        return math.inf
    return float(bin_index(np.array([last]), width)[0])


@dataclass(frozen=True)
class Piece:
    """One part of a cover: level rows ``[k_lo, k_hi)`` or raw ``[lo, hi)``."""

    level: int | None  # None = raw samples
    lo: float
    hi: float
    k_lo: int = 0
    k_hi: int = 0


def plan_cover(lo: float, hi: float, level: int, coverage: list[float]) -> list[Piece]:
    """Split ``[lo, hi)`` into pieces answered by whole buckets or raw samples.

    Parameters
    ----------
    lo, hi : float
        Time range.
    level : int
        Coarsest level to use (index in :data:`LEVELS`).
    coverage : list of float
        For each level, the bucket index up to which (exclusive) the file's
        rows are complete: ``inf`` for a cleanly closed file, the last row's
        ``k + 1`` (or ``-inf`` if none) for a growing or crashed file.

    Returns
    -------
    list of Piece
        Pieces in time order; together they cover ``[lo, hi)`` exactly once.
    """
    pieces: list[Piece] = []

    def rec(lo: float, hi: float, i: int) -> None:
        if hi <= lo:
            return
        if i < 0:
            pieces.append(Piece(None, lo, hi))
            return
        w = WIDTHS[i]
        ka = math.ceil(lo / w)
        kb = math.floor(hi / w) if math.isfinite(hi) else math.inf
        kb = min(kb, coverage[i])
        if not math.isfinite(ka) or kb == -math.inf or ka >= kb:
            rec(lo, hi, i - 1)
            return
        rec(lo, ka * w, i - 1)
        pieces.append(Piece(i, ka * w, kb * w, int(ka), int(kb)))
        rec(kb * w, hi, i - 1)

    rec(lo, hi, level)
    return pieces
