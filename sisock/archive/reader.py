"""Read an archive directory: field listing and (downsampled) data queries.

Behaviour
---------
* Works beside a live writer in another process: every file is opened
  read-only in SWMR mode and the growing file is refreshed on each query.
  New files are picked up without restart: the directory is re-listed when
  its modification time changes (one ``stat`` per query otherwise).
* The first query opens every immutable file once to learn its timelines
  and spans (kept for the reader's lifetime); after that a query reads only
  the files that overlap ``[start, end)`` (``read`` counts them in
  :attr:`ArchiveReader.last_files_read`).  At most ``max_open_files`` HDF5
  handles stay open.
* Downsampled queries with a large ``min_stride`` use the summary levels
  (:mod:`sisock.archive.summary`); the level rows of cleanly closed files
  that lie wholly inside the range are concatenated once per (timeline,
  level, fields) and cached, so a long query costs about one numpy pass over
  a few rows per output bin.
* ``finalized_until``: None when nothing returned can change any more, i.e.
  no writer has a file open, or the timeline already has data at or after
  ``end``.  Otherwise, for raw data, the last stored time of the timeline
  (samples stamped before it will not change); for downsampled data, the
  start of the bin holding that time (outputs stamped before it are final).
* ``max_samples`` limits the number of values returned (sum over the
  requested fields); raw queries are counted before anything is read.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..downsample import (
    NEEDS,
    BucketStats,
    bin_index,
    check_method,
    downsample_columns,
    downsample_strings,
    finish,
    reduce_buckets,
    sample_stats,
    sorted_bins,
)
from ..errors import BadArgument, TooMuchData
from ..protocol import check_min_stride
from . import catalog
from .h5io import ReadableFile
from ..protocol import FieldSpec
from .summary import LEVELS, WIDTHS, choose_stride, plan_cover

log = logging.getLogger(__name__)


@dataclass
class _Consolidated:
    """Level rows of a run of complete files, concatenated."""

    seqs: tuple[int, ...]
    offsets: np.ndarray  # row offset of each file, plus the total
    k: np.ndarray
    stats: BucketStats
    seqs_arr: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.seqs_arr = np.asarray(self.seqs, dtype=np.int64)

    @staticmethod
    def join(a: _Consolidated, b: _Consolidated) -> _Consolidated:
        """Rows of ``a`` then rows of ``b`` (adjacent runs of files)."""
        return _Consolidated(
            a.seqs + b.seqs,
            np.concatenate((a.offsets[:-1], a.offsets[-1] + b.offsets)),
            np.concatenate((a.k, b.k)),
            BucketStats.concat([a.stats, b.stats], a.stats.nfields),
        )

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + sum(getattr(self.stats, a).nbytes for a in
                                   ("n", "count", "sum", "min", "max", "first", "last", "min_first"))


def _fill(ftype: str, n: int) -> np.ndarray:
    if ftype == "number":
        return np.full(n, np.nan)
    if ftype == "bool":
        return np.zeros(n, bool)
    return np.full(n, "", dtype=str)


def _empty(ftype: str) -> np.ndarray:
    return _fill(ftype, 0)


def _select(stats: BucketStats, cols: list[int]) -> BucketStats:
    """Columns ``cols`` of ``stats`` (-1 gives a field without data)."""
    if all(c >= 0 for c in cols) and cols == list(range(stats.nfields)):
        return stats
    r = len(stats)
    safe = [max(c, 0) for c in cols]
    miss = np.array([c < 0 for c in cols], bool)
    out = BucketStats(
        stats.n,
        np.where(miss, 0, stats.count[:, safe]) if r else np.zeros((0, len(cols)), np.int64),
        np.where(miss, 0.0, stats.sum[:, safe]) if r else np.zeros((0, len(cols))),
        np.where(miss, np.nan, stats.min[:, safe]) if r else np.zeros((0, len(cols))),
        np.where(miss, np.nan, stats.max[:, safe]) if r else np.zeros((0, len(cols))),
        np.where(miss, np.nan, stats.first[:, safe]) if r else np.zeros((0, len(cols))),
        np.where(miss, np.nan, stats.last[:, safe]) if r else np.zeros((0, len(cols))),
        np.where(miss, True, stats.min_first[:, safe]) if r else np.zeros((0, len(cols)), bool),
    )
    return out


class ArchiveReader:
    """Query an archive directory written by :class:`~sisock.archive.writer.ArchiveWriter`.

    Parameters
    ----------
    directory : str or os.PathLike
        The archive directory.
    max_open_files : int
        HDF5 handles kept open between queries.
    cache_bytes : int
        Memory budget of the concatenated summary rows.
    """

    def __init__(self, directory: str | os.PathLike, *, max_open_files: int = 64,
                 cache_bytes: int = 512 * 2**20) -> None:
        self.directory = os.fspath(directory)
        self.max_open_files = int(max_open_files)
        self.cache_bytes = int(cache_bytes)
        self._catalog = catalog.Catalog(self.directory)
        self._files: dict[int, ReadableFile] = {}
        self._consolidated: dict[tuple, _Consolidated] = {}
        self._index = _Index.build({})
        #: Sequence numbers of the files whose data the last query read.
        self.last_files_read: set[int] = set()
        self._touched: set[int] = set()
        self._opens_seen = -1

    # ------------------------------------------------------------- catalog
    def _refresh(self) -> None:
        """Pick up new/renamed files; refresh growing files."""
        if self._catalog.refresh():
            entries = self._catalog.entries
            for seq in list(self._files):
                if seq not in entries:
                    self._files.pop(seq).release()
            for seq, e in entries.items():
                complete = e.state == catalog.CLOSED
                immutable = e.state != catalog.OPEN
                f = self._files.get(seq)
                if f is None:
                    f = self._files[seq] = ReadableFile(e.path, complete, immutable)
                    f.seq = seq
                    f.touched = self._touched
                elif f.path != e.path:
                    f.rename(e.path, complete, immutable)
            self._load([f for f in self._files.values()], release=True)
            self._index = _Index.build(self._files)
        else:
            self._load([f for f in self._index.mutable])
        self._trim_handles()

    def _load(self, files: list[ReadableFile], release: bool = False) -> None:
        for f in files:
            try:
                f.load(release=release and f.immutable)
            except (OSError, KeyError) as exc:
                if not os.path.exists(f.path):  # renamed under us: list again
                    self._catalog.invalidate()
                    return self._refresh()
                log.error("archive: skipping unreadable file %s (%s)", f.path, exc)
                self._files.pop(f.seq).release()
                self._catalog.invalidate()

    def _trim_handles(self) -> None:
        if ReadableFile.opens == self._opens_seen:
            return
        self._opens_seen = ReadableFile.opens
        open_files = [f for f in self._files.values() if f.is_open]
        if len(open_files) > self.max_open_files:
            open_files.sort(key=lambda f: f.last_used)
            for f in open_files[: len(open_files) - self.max_open_files]:
                f.release()

    def _specs(self) -> tuple[dict[str, tuple[str, FieldSpec]], dict[str, list[ReadableFile]]]:
        """Field -> (timeline, spec) (newest definition wins); timeline -> files with data."""
        ix = self._index
        if not ix.mutable:
            return ix.fields, ix.files
        fields = dict(ix.fields)
        files = {k: list(v) for k, v in ix.files.items()}
        for f in ix.mutable:
            for tl, info in f.timelines.items():
                for name, spec in info.fields.items():
                    fields[name] = (tl, spec)
                if info.count:
                    files.setdefault(tl, []).append(f)
        return fields, files

    def _overlapping(self, files: list[ReadableFile], tl: str, start: float, end: float
                     ) -> list[ReadableFile]:
        spans = self._index.spans.get(tl)
        n_imm = 0
        out: list[ReadableFile] = []
        if spans is not None:
            t_first, t_last = spans
            n_imm = t_first.size
            i0 = int(np.searchsorted(t_last, start, side="left"))
            i1 = int(np.searchsorted(t_first, end, side="left"))
            out = files[i0:max(i0, i1)]
        for f in files[n_imm:]:
            info = f.timelines[tl]
            if info.t_first < end and info.t_last >= start:
                out.append(f)
        return out

    def _writer_active(self) -> bool:
        return bool(self._index.mutable)

    # ------------------------------------------------------------- listing
    def timelines(self) -> dict[str, dict]:
        """Every timeline with data: span, sample count and field names.

        Returns
        -------
        dict
            ``{name: {"t_first", "t_last", "count", "fields": [names]}}``.
        """
        self._refresh()
        fields, files = self._specs()
        out: dict[str, dict] = {}
        for tl, fl in files.items():
            infos = [f.timelines[tl] for f in fl]
            out[tl] = {
                "t_first": min(i.t_first for i in infos),
                "t_last": max(i.t_last for i in infos),
                "count": sum(i.count for i in infos),
                "fields": [k for k, (t, _) in fields.items() if t == tl],
            }
        return out

    def fields(self, start: float, end: float) -> tuple[dict, dict]:
        """Fields and timelines with data in ``[start, end)`` (get_fields shape).

        Returns
        -------
        (dict, dict)
            ``field[name] = {description, timeline, type, units}`` and
            ``timeline[name] = {interval, field: [names]}``; ``interval`` is
            the average seconds between samples in the range (None if fewer
            than two).
        """
        start, end = _check_range(start, end)
        self._refresh()
        specs, files = self._specs()
        field_out: dict[str, dict] = {}
        tl_out: dict[str, dict] = {}
        for tl, fl in files.items():
            count, t0, t1 = 0, math.inf, -math.inf
            for f in self._overlapping(fl, tl, start, end):
                i0, i1 = f.index(tl, start), f.index(tl, end)
                if i1 > i0:
                    count += i1 - i0
                    t = f.read_t(tl, i0, i0 + 1), f.read_t(tl, i1 - 1, i1)
                    t0, t1 = min(t0, float(t[0][0])), max(t1, float(t[1][0]))
            if not count:
                continue
            names = [k for k, (t, _) in specs.items() if t == tl]
            tl_out[tl] = {"interval": (t1 - t0) / (count - 1) if count > 1 else None, "field": names}
            for k in names:
                spec = specs[k][1]
                field_out[k] = {"description": spec.description, "timeline": tl,
                                "type": spec.type, "units": spec.units}
        self._trim_handles()
        return field_out, tl_out

    # ------------------------------------------------------------- data
    def read(
        self,
        fields: Iterable[str],
        start: float,
        end: float,
        min_stride: float | None = None,
        method: str = "mean",
        max_samples: int | None = None,
    ) -> dict:
        """Data of ``fields`` in ``[start, end)`` (get_data shape, numpy arrays).

        Parameters
        ----------
        fields : iterable of str
            Field names; unknown fields give empty arrays.
        start, end : float
            UNIX seconds, half-open range.
        min_stride : float, optional
            Downsample so that successive samples are at least this far
            apart (see :mod:`sisock.downsample`, :mod:`sisock.archive.summary`).
        method : str
            Downsampling method (ignored without ``min_stride``).
        max_samples : int, optional
            Limit on the number of values returned (all fields together).

        Returns
        -------
        dict
            ``{"data": {field: array}, "timeline": {name: {"t": array,
            "finalized_until": float or None}}}``.

        Raises
        ------
        BadArgument
            Bad range, ``method`` or ``min_stride``.
        TooMuchData
            The result would hold more than ``max_samples`` values; the
            message suggests a ``min_stride`` that fits.
        """
        check_method(method)
        min_stride = check_min_stride(min_stride)
        start, end = _check_range(start, end)
        if max_samples is not None and (isinstance(max_samples, bool) or int(max_samples) < 1):
            raise BadArgument(f"argument 'max_samples' must be a positive integer, got {max_samples!r}")
        fields = list(dict.fromkeys(fields))
        self._refresh()
        self._touched.clear()
        specs, files = self._specs()
        data: dict[str, np.ndarray] = {}
        by_tl: dict[str, list[str]] = {}
        for name in fields:
            if name in specs:
                by_tl.setdefault(specs[name][0], []).append(name)
                data[name] = _empty(specs[name][1].type)
            else:
                data[name] = np.zeros(0)
        timelines: dict[str, dict] = {}
        budget = max_samples
        for tl, names in by_tl.items():
            types = {k: specs[k][1].type for k in names}
            ovl = self._overlapping(files.get(tl, []), tl, start, end)
            if not ovl:
                continue
            if min_stride is None:
                t, cols = self._read_raw(ovl, tl, names, types, start, end, budget, method=None)
                stride = None
            else:
                stride, level = choose_stride(min_stride)
                if level is None:
                    t, cols = self._read_raw(ovl, tl, names, types, start, end, None, method)
                    t, cols = downsample_columns(t, cols, stride, method)
                else:
                    t, cols = self._read_summary(ovl, tl, names, types, start, end, stride, level, method)
            if t.size == 0:
                continue
            if budget is not None:
                if t.size * len(names) > budget:
                    raise _too_much(max_samples, t.size * len(names), len(names), start, end, method)
                budget -= t.size * len(names)
            data.update(cols)
            timelines[tl] = {"t": t, "finalized_until": self._finalized(files[tl], tl, end, stride)}
        self.last_files_read = set(self._touched)
        self._trim_handles()
        return {"data": data, "timeline": timelines}

    def _finalized(self, files: list[ReadableFile], tl: str, end: float, stride: float | None
                   ) -> float | None:
        if not self._writer_active():
            return None
        t_last = max(f.timelines[tl].t_last for f in files[-2:])
        if end <= t_last:
            return None
        if stride is None:
            return t_last
        return float(bin_index(np.array([t_last]), stride)[0]) * stride

    def _read_raw(self, ovl: list[ReadableFile], tl: str, names: list[str], types: dict[str, str],
                  start: float, end: float, budget: int | None, method: str | None
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        spans = [(f, f.index(tl, start), f.index(tl, end)) for f in ovl]
        if budget is not None:
            total = sum(i1 - i0 for _, i0, i1 in spans) * len(names)
            if total > budget:
                raise _too_much(budget, total, len(names), start, end, "mean")
        ts: list[np.ndarray] = []
        cols: dict[str, list[np.ndarray]] = {k: [] for k in names}
        for f, i0, i1 in spans:
            if i1 <= i0:
                continue
            t = f.read_t(tl, i0, i1)
            info = f.timelines[tl]
            part = {}
            for k in names:
                if k in info.fields and info.fields[k].type == types[k]:
                    part[k] = f.read_field(tl, k, i0, i1)
                else:
                    part[k] = _fill(types[k], t.size)
            n = min([t.size] + [v.size for v in part.values()])  # growing file: lengths may differ
            ts.append(t[:n])
            for k in names:
                cols[k].append(part[k][:n])
        if not ts:
            return np.zeros(0), {k: _empty(types[k]) for k in names}
        return np.concatenate(ts), {k: np.concatenate(v) for k, v in cols.items()}

    def _read_summary(self, ovl: list[ReadableFile], tl: str, names: list[str], types: dict[str, str],
                      start: float, end: float, stride: float, level: int, method: str
                      ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        nums = [k for k in names if types[k] in ("number", "bool")]
        strs = [k for k in names if k not in nums]
        bins_parts: list[np.ndarray] = []
        stat_parts: list[BucketStats] = []
        run: list[ReadableFile] = []

        def flush_run() -> None:
            if run:
                k, st = self._interior_rows(tl, nums, level, run)
                bins_parts.append(np.floor_divide(k, int(round(stride / WIDTHS[level]))))
                stat_parts.append(st)
                run.clear()

        for f in ovl:
            info = f.timelines[tl]
            if f.complete and level >= info.min_level and start <= info.t_first and info.t_last < end:
                run.append(f)
                continue
            flush_run()
            cols = [info.numeric.index(k) if k in info.numeric else -1 for k in nums]
            cover = f.coverage(tl)
            for p in plan_cover(start, end, level, cover):
                if p.level is None:
                    i0, i1 = f.index(tl, p.lo), f.index(tl, p.hi)
                    if i1 <= i0:
                        continue
                    t = f.read_t(tl, i0, i1)
                    vals = np.empty((t.size, len(nums)))
                    for j, k in enumerate(nums):
                        vals[:, j] = (f.read_field(tl, k, i0, i1) if cols[j] >= 0
                                      else np.full(t.size, np.nan))[: t.size]
                    bins_parts.append(bin_index(t, stride))
                    stat_parts.append(sample_stats(vals))
                else:
                    k, st = f.level(tl, p.level)
                    a, b = np.searchsorted(k, [p.k_lo, p.k_hi])
                    if b <= a:
                        continue
                    factor = int(round(stride / WIDTHS[p.level]))
                    bins_parts.append(np.floor_divide(k[a:b], factor))
                    stat_parts.append(_select(st.take(slice(a, b)), cols))
        flush_run()
        bins = np.concatenate(bins_parts) if bins_parts else np.zeros(0, np.int64)
        stats = BucketStats.concat(stat_parts, len(nums))
        ub, red = reduce_buckets(bins, stats, NEEDS[method])
        t_out, v = finish(ub, red, stride, method)
        out = {k: v[:, j] for j, k in enumerate(nums)}
        if strs:
            t_raw, raw = self._read_raw(ovl, tl, strs, types, start, end, None, None)
            rb, starts = sorted_bins(t_raw, stride)
            pos = np.clip(np.searchsorted(rb, ub), 0, max(rb.size - 1, 0))
            hit = (pos < rb.size) & (rb[pos] == ub) if rb.size else np.zeros(ub.size, bool)
            per = 2 if method == "minmax" else 1
            for k in strs:
                got = downsample_strings(starts, raw[k], method)
                res = np.full(ub.size * per, "", dtype=got.dtype if got.size else str)
                for r in range(per):
                    res[r::per][hit] = got[r::per][pos[hit]]
                out[k] = res
        return t_out, {k: out[k] for k in names}

    def _interior_rows(self, tl: str, nums: list[str], level: int, run: list[ReadableFile]
                       ) -> tuple[np.ndarray, BucketStats]:
        """Level rows of complete files wholly inside the range (cached concatenation)."""
        key = (tl, level, tuple(nums))
        allseq = self._index.complete_arr.get(tl, np.zeros(0, np.int64))
        r0, r1 = (int(x) for x in np.searchsorted(allseq, [run[0].seq, run[-1].seq]))
        c = self._consolidated.pop(key, None)
        if c is not None:
            c0, c1 = (int(x) for x in np.searchsorted(allseq, [c.seqs[0], c.seqs[-1]]))
            valid = c1 < allseq.size and tuple(allseq[c0:c1 + 1]) == c.seqs
            if not valid or r1 < c0 - 1 or r0 > c1 + 1:  # stale, or disjoint from the request
                c = None
        if c is None:
            c = self._rows_of(tl, nums, level, tuple(int(x) for x in allseq[r0:r1 + 1]))
        else:
            if r0 < c0:
                c = _Consolidated.join(self._rows_of(tl, nums, level, tuple(int(x) for x in allseq[r0:c0])), c)
                c0 = r0
            if r1 > c1:
                c = _Consolidated.join(c, self._rows_of(tl, nums, level, tuple(int(x) for x in allseq[c1 + 1:r1 + 1])))
        self._consolidated[key] = c  # most recently used last
        self._budget()
        i0, i1 = (int(x) for x in np.searchsorted(c.seqs_arr, [run[0].seq, run[-1].seq]))
        a, b = int(c.offsets[i0]), int(c.offsets[i1 + 1])
        return c.k[a:b], c.stats.take(slice(a, b))

    def _rows_of(self, tl: str, nums: list[str], level: int, seqs: tuple[int, ...]) -> _Consolidated:
        """Concatenated level rows of the given complete files."""
        ks, sts, sizes = [], [], []
        for s in seqs:
            f = self._files[s]
            info = f.timelines[tl]
            k, st = f.level(tl, level, cache=False)
            if f.is_open and len(seqs) > self.max_open_files:
                f.release()
            ks.append(k)
            sts.append(_select(st, [info.numeric.index(x) if x in info.numeric else -1 for x in nums]))
            sizes.append(len(k))
        offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        k = np.concatenate(ks) if ks else np.zeros(0, np.int64)
        self._trim_handles()
        return _Consolidated(seqs, offsets, k, BucketStats.concat(sts, len(nums)))

    def _budget(self) -> None:
        total = sum(c.nbytes for c in self._consolidated.values())
        for key in list(self._consolidated):
            if total <= self.cache_bytes or len(self._consolidated) <= 1:
                break
            total -= self._consolidated.pop(key).nbytes

    def close(self) -> None:
        """Release every HDF5 handle."""
        for f in self._files.values():
            f.release()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Index:
    """What the immutable files hold, rebuilt when the directory changes."""

    fields: dict[str, tuple[str, FieldSpec]]
    files: dict[str, list[ReadableFile]]  # timeline -> files with data (seq order)
    spans: dict[str, tuple[np.ndarray, np.ndarray]]  # over the immutable prefix
    complete_arr: dict[str, np.ndarray]  # timeline -> seqs of complete files with data
    mutable: list[ReadableFile]

    @staticmethod
    def build(files: dict[int, ReadableFile]) -> _Index:
        fields: dict[str, tuple[str, FieldSpec]] = {}
        per_tl: dict[str, list[ReadableFile]] = {}
        complete: dict[str, list[int]] = {}
        mutable = []
        for seq in sorted(files):
            f = files[seq]
            if not f.immutable:
                mutable.append(f)
                continue
            for tl, info in f.timelines.items():
                for name, spec in info.fields.items():
                    fields[name] = (tl, spec)
                if info.count:
                    per_tl.setdefault(tl, []).append(f)
                    if f.complete:
                        complete.setdefault(tl, []).append(seq)
        spans = {}
        for tl, fl in per_tl.items():
            t_first = np.array([f.timelines[tl].t_first for f in fl])
            t_last = np.array([f.timelines[tl].t_last for f in fl])
            # per timeline, files are in time order; keep the arrays sorted for searchsorted
            spans[tl] = (np.maximum.accumulate(t_first), np.maximum.accumulate(t_last))
        return _Index(fields, per_tl, spans,
                      {k: np.asarray(v, dtype=np.int64) for k, v in complete.items()}, mutable)


def _check_range(start: object, end: object) -> tuple[float, float]:
    for name, v in (("start", start), ("end", end)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
            raise BadArgument(f"argument '{name}' must be a finite number of UNIX seconds, got {v!r}")
    start, end = float(start), float(end)
    if end < start:
        raise BadArgument(f"argument 'end' ({end}) is before 'start' ({start})")
    return start, end


def _too_much(limit: int, n: int, nfields: int, start: float, end: float, method: str) -> TooMuchData:
    per_bin = nfields * (2 if method == "minmax" else 1)
    bins = max(1, limit // per_bin - 1)
    suggest = (end - start) / bins if end > start else 1.0
    suggest = float(f"{suggest * 1.01:.3g}")
    return TooMuchData(
        f"the result would hold {n} values ({nfields} field(s)), more than max_samples={limit}; "
        f"pass min_stride >= {suggest:g} s (or request a shorter range or fewer fields)"
    )


__all__ = ["ArchiveReader", "LEVELS"]
