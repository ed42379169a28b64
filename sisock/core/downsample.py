"""Epoch-aligned downsampling of timestreams (pure numpy, no I/O).

Contract (README, "Downsampling")
---------------------------------
* Bins are aligned to the epoch: a sample at time ``t`` falls in bin
  ``k = floor(t / stride)``, i.e. ``[k * stride, (k + 1) * stride)``.  The
  floor is exact (a float rounding correction is applied), so a bin computed
  here equals a bin computed from precomputed bucket statistics whose width
  divides ``stride``.
* One output sample per *non-empty* bin, a bin holding at least one sample
  (NaN or not).  Bins depend on timestamps only, so every field of a
  timeline shares the output times.
* ``mean``, ``min``, ``max``, ``first``, ``last`` are stamped at the bin
  centre ``(k + 0.5) * stride``: successive outputs are at least ``stride``
  apart.
* ``minmax`` gives two samples per non-empty bin, stamped at
  ``k * stride + 0.25 * stride`` and ``k * stride + 0.75 * stride``; the
  values are the bin's minimum and maximum ordered by which occurred first.
  The pair is the documented exception to the spacing rule; fixed stamps
  keep one shared time axis for all fields of a timeline.
* NaN is ignored by every aggregation.  A bin whose samples are all NaN
  yields NaN (the gap stays visible).  ``first``/``last`` are the first/last
  non-NaN value of the bin (NaN if there is none).
* ``bool`` fields are aggregated as the numbers 0 and 1 and come out as
  float64: ``mean`` is the fraction of samples that are true, ``min`` is 1
  only if all are true, ``max`` is 1 if any is true.
* ``string`` fields have no order or average.  ``last`` gives the last
  non-empty string of the bin, ``minmax`` gives the first and the last
  non-empty strings (at the two stamps), and every other method gives the
  first non-empty string.  ``""`` plays the role NaN plays for numbers.

The same machinery combines precomputed per-bucket statistics
(:class:`BucketStats`, used by the archive summary levels): a raw sample is
simply a bucket of one sample, so :func:`downsample` and the summary path
share :func:`reduce_buckets` and :func:`finish`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import BadArgument
from .protocol import check_method, check_min_stride

#: Column names of one numeric field in a summary table, in storage order.
STAT_NAMES = ("count", "sum", "min", "max", "first", "last", "min_first")


def bin_index(t: np.ndarray, stride: float) -> np.ndarray:
    """Return the epoch-aligned bin index ``floor(t / stride)`` of each time.

    The quotient is corrected so that ``k * stride <= t < (k + 1) * stride``
    holds for the float products, which makes the result exact whenever
    ``stride`` is an integer multiple of a power of two (as the summary
    levels use).

    Parameters
    ----------
    t : numpy.ndarray
        Times in seconds.
    stride : float
        Bin width in seconds, > 0.

    Returns
    -------
    numpy.ndarray
        int64 bin indices, same shape as ``t``.
    """
    t = np.asarray(t, dtype=np.float64)
    k = np.floor(t / stride).astype(np.int64)
    if k.size:
        kf = k.astype(np.float64)
        k -= kf * stride > t
        kf = k.astype(np.float64)
        k += (kf + 1.0) * stride <= t
    return k


@dataclass
class BucketStats:
    """Statistics of time-ordered buckets, for ``F`` numeric fields.

    A bucket is a group of consecutive samples; a raw sample is a bucket of
    one.  Arrays have ``R`` rows (buckets, in time order); per-field arrays
    have shape ``(R, F)``.

    Attributes
    ----------
    n : numpy.ndarray
        int64 ``(R,)``: samples in the bucket, NaN included (bins are defined
        by timestamps only).
    count : numpy.ndarray
        int64 ``(R, F)``: non-NaN samples.
    sum : numpy.ndarray
        float64: sum of non-NaN samples (0 if none).
    min, max, first, last : numpy.ndarray
        float64: over non-NaN samples, NaN if ``count == 0``.
    min_first : numpy.ndarray
        bool: True if the first occurrence of the minimum is no later than
        the first occurrence of the maximum (True if ``count == 0``).
    """

    n: np.ndarray
    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    first: np.ndarray
    last: np.ndarray
    min_first: np.ndarray

    def __len__(self) -> int:
        return int(self.n.shape[0])

    @property
    def nfields(self) -> int:
        """Number of fields ``F``."""
        return int(self.count.shape[1])

    def take(self, sl: slice | np.ndarray) -> BucketStats:
        """Return the rows selected by ``sl`` (a slice or an index array)."""
        return BucketStats(*(getattr(self, k)[sl] for k in _ATTRS))

    @staticmethod
    def empty(nfields: int) -> BucketStats:
        """Return statistics with zero rows for ``nfields`` fields."""
        z = np.zeros((0, nfields))
        return BucketStats(
            np.zeros(0, np.int64),
            z.astype(np.int64),
            z,
            z.copy(),
            z.copy(),
            z.copy(),
            z.copy(),
            z.astype(bool),
        )

    @staticmethod
    def concat(parts: list[BucketStats], nfields: int) -> BucketStats:
        """Concatenate rows of several statistics (in the given order)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return BucketStats.empty(nfields)
        if len(parts) == 1:
            return parts[0]
        return BucketStats(*(np.concatenate([getattr(p, k) for p in parts]) for k in _ATTRS))

    def to_table(self) -> np.ndarray:
        """Pack into a float64 table ``(R, 1 + 7 F)``: ``n`` then, per field,
        the columns of :data:`STAT_NAMES`."""
        r, f = self.count.shape
        out = np.empty((r, 1 + len(STAT_NAMES) * f))
        out[:, 0] = self.n
        for j, name in enumerate(STAT_NAMES):
            out[:, 1 + j :: len(STAT_NAMES)] = getattr(self, name)
        return out

    @staticmethod
    def from_table(table: np.ndarray, fields: list[int] | None = None) -> BucketStats:
        """Inverse of :meth:`to_table`; ``fields`` selects field positions."""
        table = np.asarray(table, dtype=np.float64)
        nf = (table.shape[1] - 1) // len(STAT_NAMES)
        idx = list(range(nf)) if fields is None else list(fields)
        cols = {}
        for j, name in enumerate(STAT_NAMES):
            cols[name] = table[:, [1 + j + len(STAT_NAMES) * i for i in idx]]
        return BucketStats(
            n=table[:, 0].astype(np.int64),
            count=cols["count"].astype(np.int64),
            sum=cols["sum"],
            min=cols["min"],
            max=cols["max"],
            first=cols["first"],
            last=cols["last"],
            min_first=cols["min_first"] != 0,
        )


_ATTRS = ("n", "count", "sum", "min", "max", "first", "last", "min_first")


def sample_stats(values: np.ndarray) -> BucketStats:
    """Turn raw samples into one-sample buckets.

    Parameters
    ----------
    values : numpy.ndarray
        ``(N,)`` or ``(N, F)`` numbers or bools (bools become 0/1).
    """
    v = np.asarray(values)
    if v.ndim == 1:
        v = v[:, None]
    v = v.astype(np.float64, copy=False)
    ok = ~np.isnan(v)
    return BucketStats(
        n=np.ones(v.shape[0], np.int64),
        count=ok.astype(np.int64),
        sum=np.where(ok, v, 0.0),
        min=v,
        max=v,
        first=v,
        last=v,
        min_first=np.ones(v.shape, bool),
    )


def _group_starts(bins: np.ndarray) -> np.ndarray:
    """Index of the first row of each run of equal ``bins`` (must be sorted)."""
    if bins.size == 0:
        return np.zeros(0, np.intp)
    d = np.diff(bins)
    if (d < 0).any():
        raise ValueError("bins must be non-decreasing (rows in time order)")
    return np.concatenate(([0], np.flatnonzero(d) + 1))


def _first_true(mask: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Row of the first True in ``mask[starts[i]:ends[i]]``, or -1."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return np.full(starts.shape, -1, np.intp)
    p = np.searchsorted(idx, starts)
    cand = idx[np.minimum(p, idx.size - 1)]
    return np.where((p < idx.size) & (cand < ends), cand, -1)


def _last_true(mask: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Row of the last True in ``mask[starts[i]:ends[i]]``, or -1."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return np.full(starts.shape, -1, np.intp)
    p = np.searchsorted(idx, ends) - 1
    cand = idx[np.maximum(p, 0)]
    return np.where((p >= 0) & (cand >= starts), cand, -1)


def _pick(col: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``col[rows]`` with NaN where ``rows == -1``."""
    out = col[np.maximum(rows, 0)] if col.size else np.zeros(rows.shape)
    return np.where(rows >= 0, out, np.nan)


#: Statistics each method needs (``n`` is always computed).
NEEDS = {
    "mean": ("count", "sum"),
    "min": ("min",),
    "max": ("max",),
    "first": ("first",),
    "last": ("last",),
    "minmax": ("min", "max", "min_first"),
}


def reduce_buckets(
    bins: np.ndarray, stats: BucketStats, need: tuple[str, ...] | None = None
) -> tuple[np.ndarray, BucketStats]:
    """Combine consecutive buckets that share a bin.

    Parameters
    ----------
    bins : numpy.ndarray
        int64 ``(R,)`` output bin of each bucket, non-decreasing.  Each bucket
        must lie entirely in its bin (e.g. bucket width divides the stride).
    stats : BucketStats
        ``R`` buckets in time order.
    need : tuple of str, optional
        Statistics to compute (names of :data:`STAT_NAMES`, e.g.
        ``NEEDS[method]``); the others are left as NaN/0 placeholders.
        Default: all of them.

    Returns
    -------
    (numpy.ndarray, BucketStats)
        The distinct bins (sorted) and their combined statistics.  Results
        are exact for count, min, max, first, last and min/max order; sums
        are added in row order.
    """
    bins = np.asarray(bins, dtype=np.int64)
    if bins.shape[0] != len(stats):
        raise ValueError("bins and stats must have the same number of rows")
    nf = stats.nfields
    if bins.size == 0:
        return bins, BucketStats.empty(nf)
    starts = _group_starts(bins)
    if starts.size == bins.size:  # nothing to combine
        return bins.copy(), stats
    return bins[starts], _reduce(starts, stats, need)


def _reduce(starts: np.ndarray, stats: BucketStats, need: tuple[str, ...] | None) -> BucketStats:
    """Combine the row groups beginning at ``starts`` (see reduce_buckets)."""
    nf = stats.nfields
    ends = np.append(starts[1:], len(stats))
    need = STAT_NAMES if need is None else tuple(need)
    if "min_first" in need:
        need = tuple(set(need) | {"min", "max"})
    nb = starts.size
    shape = (nb, nf)
    n = np.add.reduceat(stats.n, starts)
    if "count" in need or "sum" in need:
        count = np.add.reduceat(stats.count, starts, axis=0)
        total = np.add.reduceat(stats.sum, starts, axis=0)
    else:
        count = np.zeros(shape, np.int64)
        total = np.zeros(shape)
    mn = np.fmin.reduceat(stats.min, starts, axis=0) if "min" in need else np.full(shape, np.nan)
    mx = np.fmax.reduceat(stats.max, starts, axis=0) if "max" in need else np.full(shape, np.nan)
    first = np.full(shape, np.nan)
    last = np.full(shape, np.nan)
    min_first = np.ones(shape, bool)
    group = np.repeat(np.arange(nb), ends - starts) if "min_first" in need else None
    for f in range(nf):
        valid = stats.count[:, f] > 0
        if "first" in need:
            first[:, f] = _pick(stats.first[:, f], _first_true(valid, starts, ends))
        if "last" in need:
            last[:, f] = _pick(stats.last[:, f], _last_true(valid, starts, ends))
        if group is not None:
            imin = _first_true(valid & (stats.min[:, f] == mn[group, f]), starts, ends)
            imax = _first_true(valid & (stats.max[:, f] == mx[group, f]), starts, ends)
            same = stats.min_first[np.maximum(imin, 0), f]
            min_first[:, f] = np.where(imin == imax, same | (imin < 0), imin < imax)
    return BucketStats(n, count, total, mn, mx, first, last, min_first)


def sorted_bins(t: np.ndarray, stride: float) -> tuple[np.ndarray, np.ndarray]:
    """Bins of sorted times without a per-sample division.

    Equivalent to ``b = bin_index(t, stride)`` followed by taking the
    distinct values of ``b`` and the index where each starts, but uses a
    binary search of the bin edges ``k * stride`` when there are fewer bins
    than samples.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Distinct non-empty bins (int64) and the index of their first sample.
    """
    t = np.asarray(t, dtype=np.float64)
    if t.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.intp)
    k0, k1 = bin_index(t[[0, -1]], stride)
    if k1 - k0 + 1 > t.size // 4:
        b = bin_index(t, stride)
        starts = _group_starts(b)
        return b[starts], starts
    ks = np.arange(k0, k1 + 1, dtype=np.int64)
    st = np.searchsorted(t, ks.astype(np.float64) * stride, side="left")
    keep = np.append(st[1:] > st[:-1], True)  # non-empty bins
    return ks[keep], st[keep]


def _raw_stats(starts: np.ndarray, v: np.ndarray, need: tuple[str, ...]) -> BucketStats:
    """Per-bin statistics straight from raw samples ``v`` ``(N, F)``."""
    nb, nf = starts.size, v.shape[1]
    ends = np.append(starts[1:], v.shape[0])
    shape = (nb, nf)
    ok = ~np.isnan(v)
    n = (ends - starts).astype(np.int64)
    count = np.zeros(shape, np.int64)
    total = np.zeros(shape)
    if "count" in need or "sum" in need:
        c = np.concatenate((np.zeros((1, nf), np.int64), np.cumsum(ok, axis=0)))
        count = c[ends] - c[starts]
        total = np.add.reduceat(np.where(ok, v, 0.0), starts, axis=0)
    mm = "min_first" in need
    mn = np.fmin.reduceat(v, starts, axis=0) if ("min" in need or mm) else np.full(shape, np.nan)
    mx = np.fmax.reduceat(v, starts, axis=0) if ("max" in need or mm) else np.full(shape, np.nan)
    first = np.full(shape, np.nan)
    last = np.full(shape, np.nan)
    min_first = np.ones(shape, bool)
    group = np.repeat(np.arange(nb), ends - starts) if mm else None
    for f in range(nf):
        if "first" in need:
            first[:, f] = _pick(v[:, f], _first_true(ok[:, f], starts, ends))
        if "last" in need:
            last[:, f] = _pick(v[:, f], _last_true(ok[:, f], starts, ends))
        if group is not None:
            imin = _first_true(v[:, f] == mn[group, f], starts, ends)
            imax = _first_true(v[:, f] == mx[group, f], starts, ends)
            min_first[:, f] = imin <= imax
    return BucketStats(n, count, total, mn, mx, first, last, min_first)


def finish(
    bins: np.ndarray,
    stats: BucketStats,
    stride: float,
    method: str,
    span: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Turn per-bin statistics into output times and values.

    Parameters
    ----------
    bins : numpy.ndarray
        Distinct bin indices (as returned by :func:`reduce_buckets`).
    stats : BucketStats
        One row per bin.
    stride : float
        Bin width in seconds.
    method : str
        One of :data:`METHODS`.
    span : (float, float), optional
        The query's ``[start, end)``. ``minmax`` stamps its pair at ¼ and ¾
        of the part of each bin inside it, so no stamp lies outside the
        range (whole bins: ¼ and ¾ of the bin, as without ``span``).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Times ``(M,)`` and values ``(M, F)``; ``M`` is the number of bins, or
        twice that for ``minmax``.
    """
    check_method(method)
    k = np.asarray(bins, dtype=np.float64)
    if method == "minmax":
        t = np.empty(2 * k.size)
        t[0::2] = k * stride + 0.25 * stride
        t[1::2] = k * stride + 0.75 * stride
        if span is not None and k.size:  # bins the range cuts: stamps inside the range
            lo, hi = np.maximum(k * stride, span[0]), np.minimum((k + 1) * stride, span[1])
            cut = (lo > k * stride) | (hi < (k + 1) * stride)
            t[0::2][cut] = (lo + 0.25 * (hi - lo))[cut]
            t[1::2][cut] = (lo + 0.75 * (hi - lo))[cut]
        v = np.empty((2 * k.size, stats.nfields))
        v[0::2] = np.where(stats.min_first, stats.min, stats.max)
        v[1::2] = np.where(stats.min_first, stats.max, stats.min)
        return t, v
    t = (k + 0.5) * stride
    if method == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            v = np.where(stats.count > 0, stats.sum / np.maximum(stats.count, 1), np.nan)
    else:
        v = getattr(stats, method).astype(np.float64, copy=True)
    return t, v


def _is_string(a: np.ndarray) -> bool:
    return a.dtype.kind in "USO"


def downsample_strings(starts: np.ndarray, values: np.ndarray, method: str) -> np.ndarray:
    """Downsample a string column given the first sample index of each bin.

    ``last`` gives the last non-empty string of each bin; ``minmax`` gives the
    first and the last non-empty string of each bin (interleaved); all other
    methods give the first non-empty string.  A bin without a non-empty
    string gives ``""``.
    """
    check_method(method)
    values = np.asarray(values).astype(str)
    starts = np.asarray(starts, dtype=np.intp)
    ends = np.append(starts[1:], len(values))
    nonempty = values != ""
    pad = np.append(values, "") if values.size else np.array([""])

    def pick(rows: np.ndarray) -> np.ndarray:
        return pad[np.where(rows >= 0, rows, len(values))]

    first = pick(_first_true(nonempty, starts, ends))
    if method == "first" or method in ("mean", "min", "max"):
        return first
    last = pick(_last_true(nonempty, starts, ends))
    if method == "last":
        return last
    out = np.empty(2 * starts.size, dtype=np.result_type(first, last))
    out[0::2] = first
    out[1::2] = last
    return out


def downsample(t: np.ndarray, values: np.ndarray, stride: float, method: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Downsample one field.

    Parameters
    ----------
    t : numpy.ndarray
        Sample times, non-decreasing, float64 seconds.
    values : numpy.ndarray
        ``(N,)`` numbers, bools or strings.
    stride : float
        Bin width (``min_stride``) in seconds.
    method : str
        One of :data:`METHODS`.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Output times and values (float64 for numbers and bools, str for
        strings).
    """
    tt, cols = downsample_columns(t, {"v": values}, stride, method)
    return tt, cols["v"]


def downsample_columns(
    t: np.ndarray,
    columns: Mapping[str, np.ndarray],
    stride: float,
    method: str = "mean",
    span: tuple[float, float] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Downsample several fields that share one timeline.

    Parameters
    ----------
    t : numpy.ndarray
        ``(N,)`` sample times, non-decreasing.
    columns : Mapping[str, numpy.ndarray]
        Field name to ``(N,)`` values (numbers, bools or strings).
    stride : float
        Bin width in seconds, > 0 (validated with
        :func:`sisock.core.protocol.check_min_stride`).
    method : str
        One of :data:`METHODS`.
    span : (float, float), optional
        The query's ``[start, end)`` (see :func:`finish`).

    Returns
    -------
    (numpy.ndarray, dict)
        Shared output times and one output array per field.
    """
    check_method(method)
    checked = check_min_stride(stride)
    if checked is None:
        raise BadArgument("argument 'min_stride' must be > 0 to downsample")
    stride = checked
    t = np.asarray(t, dtype=np.float64)
    if t.size > 1 and (np.diff(t) < 0).any():
        raise BadArgument("times must be non-decreasing")
    ub, starts = sorted_bins(t, stride)
    cols = {k: np.asarray(v) for k, v in columns.items()}
    for k, v in cols.items():
        if v.shape != t.shape:
            raise BadArgument(f"field {k!r} has {v.shape} values for {t.shape} times")
    num = [k for k, v in cols.items() if not _is_string(v)]
    out: dict[str, np.ndarray] = {}
    nf = len(num)
    if nf:
        stacked = np.empty((t.size, nf))
        for i, k in enumerate(num):
            stacked[:, i] = cols[k]
    else:
        stacked = np.zeros((t.size, 0))
    st = _raw_stats(starts, stacked, NEEDS[method])
    tt, vv = finish(ub, st, stride, method, span)
    for i, k in enumerate(num):
        out[k] = vv[:, i]
    for k, v in cols.items():
        if _is_string(v):
            out[k] = downsample_strings(starts, v, method)
    return tt, {k: out[k] for k in cols}
