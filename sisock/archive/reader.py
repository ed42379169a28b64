"""Read an archive directory: field listing and (downsampled) data queries.

Behaviour
---------
* Works beside a live writer in another process: every file is opened
  read-only in SWMR mode and the growing file is refreshed on each query.
  New files are picked up without restart: the directory is re-listed when
  its modification time changes (one ``stat`` per query otherwise).
* What each immutable file holds (timelines, spans, fields, coarse summary
  rows) comes from the archive index (:mod:`sisock.archive.index`) in one
  read; files the index does not describe are opened once to learn it
  (:mod:`sisock.archive.fileset`).  A query then opens only the files that
  overlap ``[start, end)`` and cannot be answered from the index (``read``
  counts the files it read in :attr:`ArchiveReader.last_files_read`).
  At most ``max_open_files`` HDF5 handles stay open.
* Downsampled queries with a large ``min_stride`` use the summary levels
  (:mod:`sisock.archive.summary`); the level rows of cleanly closed files
  that lie wholly inside the range are concatenated once per (timeline,
  level, fields) and cached (:mod:`sisock.archive.rowcache`), so a long
  query costs about one numpy pass over a few rows per output bin.
* Safe to call from several threads at once: no query waits for another
  except while the file list is refreshed.  Any number of readers may live
  in one process: they share one HDF5 handle per file
  (:mod:`sisock.archive.handles` says why that matters).
* A file renamed by the writer during a query (``.open.h5`` to ``.h5``) is
  found under its new name within the same query: the directory is listed
  again and the query restarts.
* A reader is a context manager; :meth:`ArchiveReader.close` is idempotent,
  and a reader dropped without ``close()`` releases its files at once (no
  reference cycle keeps it).
* ``finalized_until``: None when nothing returned can change any more, i.e.
  no writer has a file open, or the timeline already has data at or after
  ``end``.  Otherwise, for raw data, the last stored time of the timeline
  (samples stamped before it will not change); for downsampled data, the
  start of the bin holding that time (outputs stamped before it are final).
* ``max_samples`` limits the number of values returned (sum over the
  requested fields); raw queries are counted before anything is read.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable, Iterator

import numpy as np

from sisock.core.downsample import (
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
from sisock.core.contract import too_much_data
from sisock.core.protocol import Result, TimelineData, check_min_stride, missing_values
from .checks import check_max_samples, check_range
from .datafile import ReadableFile
from .fileset import FileSet, Snapshot
from .planner import Edge, finalized_until, inner_mask, plan_summary_read
from .rowcache import RunCache, RunRows
from .summary import LEVELS, WIDTHS, choose_stride, plan_cover, select_columns, split_table


class ArchiveReader:
    """Query an archive directory written by :class:`~sisock.archive.writer.ArchiveWriter`.

    Parameters
    ----------
    directory : str or os.PathLike
        The archive directory.
    max_open_files : int
        HDF5 handles kept open between queries.
    cache_bytes : int
        Memory budget of the concatenated summary rows of long queries.
    table_cache_bytes : int
        Memory budget of the summary tables of single files.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        max_open_files: int = 64,
        cache_bytes: int = 256 * 2**20,
        table_cache_bytes: int = 64 * 2**20,
    ) -> None:
        self.directory = os.fspath(directory)
        self.max_open_files = int(max_open_files)
        self.cache_bytes = int(cache_bytes)
        self._reads = _ReadLog()
        # the file set must not refer back to the reader (no cycle: a dropped reader
        # frees its files at once, whatever the garbage collector does)
        self.files = FileSet(self.directory, self.max_open_files, table_cache_bytes, on_read=self._reads.note)
        self._runs = RunCache(self.cache_bytes)
        #: Sequence numbers of the files whose data the last query (of this thread) read.
        self.last_files_read: set[int] = set()

    @property
    def file_opens(self) -> int:
        """HDF5 files this reader has opened so far."""
        return self.files.handles.opens

    # ------------------------------------------------------------- listing
    def timelines(self) -> dict[str, dict]:
        """Every timeline with data: span, sample count and field names.

        Returns
        -------
        dict
            ``{name: {"t_first", "t_last", "count", "fields": [names]}}``.
        """
        return self._retry(self._timelines)

    def _timelines(self) -> dict[str, dict]:
        snapshot = self.files.refresh()
        fields, files = snapshot.current()
        out: dict[str, dict] = {}
        for tl, fl in files.items():
            arrays = snapshot.arrays.get(tl)
            n_immutable = arrays.seq.size if arrays is not None else 0
            infos = [f.timelines[tl] for f in fl[n_immutable:]]
            firsts = [i.t_first for i in infos] + ([float(arrays.t_first.min())] if n_immutable else [])
            lasts = [i.t_last for i in infos] + ([float(arrays.t_last.max())] if n_immutable else [])
            out[tl] = {
                "t_first": min(firsts),
                "t_last": max(lasts),
                "count": sum(i.count for i in infos) + (int(arrays.count.sum()) if n_immutable else 0),
                "fields": [k for k, (t, _) in fields.items() if t == tl],
            }
        return out

    def fields(self, start: float, end: float) -> tuple[dict, dict]:
        """Fields and timelines with data in ``[start, end)`` (get_fields shape).

        Files wholly inside the range are counted from what the file set
        knows; only the (at most two) files at the range's edges are read.

        Returns
        -------
        (dict, dict)
            ``field[name] = {description, timeline, type, units}`` and
            ``timeline[name] = {interval, field: [names]}``; ``interval`` is
            the average seconds between samples in the range (None if fewer
            than two).
        """
        start, end = check_range(start, end)
        return self._retry(self._fields, start, end)

    def _fields(self, start: float, end: float) -> tuple[dict, dict]:
        snapshot = self.files.refresh()
        specs, files = snapshot.current()
        field_out: dict[str, dict] = {}
        tl_out: dict[str, dict] = {}
        for tl, fl in files.items():
            count, t0, t1 = 0, math.inf, -math.inf
            (lo, hi), growing = snapshot.overlapping_split(fl, tl, start, end)
            edges = list(growing)
            arrays = snapshot.arrays.get(tl)
            if arrays is not None and hi > lo:
                inner = inner_mask(arrays.t_first[lo:hi], arrays.t_last[lo:hi], start, end)
                if inner.any():
                    count += int(arrays.count[lo:hi][inner].sum())
                    t0 = float(arrays.t_first[lo:hi][inner].min())
                    t1 = float(arrays.t_last[lo:hi][inner].max())
                edges += [arrays.files[lo + int(i)] for i in np.flatnonzero(~inner)]
            for f in edges:
                i0, i1 = f.index(tl, start), f.index(tl, end)
                if i1 > i0:
                    count += i1 - i0
                    t0 = min(t0, float(f.read_t(tl, i0, i0 + 1)[0]))
                    t1 = max(t1, float(f.read_t(tl, i1 - 1, i1)[0]))
            if not count:
                continue
            names = [k for k, (t, _) in specs.items() if t == tl]
            tl_out[tl] = {"interval": (t1 - t0) / (count - 1) if count > 1 else None, "field": names}
            for k in names:
                spec = specs[k][1]
                field_out[k] = {"description": spec.description, "timeline": tl, "type": spec.type, "units": spec.units}
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
        progressive: bool = False,
    ) -> Result:
        """Data of ``fields`` in ``[start, end)`` (numpy arrays).

        Parameters
        ----------
        fields : iterable of str
            Field names; unknown fields give empty arrays.
        start, end : float
            UNIX seconds, half-open range.
        min_stride : float, optional
            Downsample so that successive samples are at least this far
            apart (see :mod:`sisock.core.downsample`, :mod:`sisock.archive.summary`).
        method : str
            Downsampling method (ignored without ``min_stride``).
        max_samples : int, optional
            Limit on the number of values returned (all fields together).
        progressive : bool
            Return before the raw samples of immutable files are read: their
            arrays are allocated at full length and each step of
            :attr:`Result.pending <sisock.protocol.Result.pending>` reads a
            slab of rows into place (run the steps in a worker thread), so a
            caller can send the first rows while the next are read. Without
            it every row is read before returning.

        Returns
        -------
        Result
            One array per field, the times of each timeline with data,
            ``finalized_until`` and ``field_timeline``.

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
        start, end = check_range(start, end)
        max_samples = check_max_samples(max_samples)
        fields = list(dict.fromkeys(fields))
        self._reads.touched = touched = set()
        try:
            out = self._retry(self._read, fields, start, end, min_stride, method, max_samples, progressive)
        finally:
            self._reads.touched = None
        self.last_files_read = touched
        return out

    def _retry(self, query, *args):
        """Run ``query``, listing the directory again if a file was renamed under it."""
        for attempt in range(RENAME_RETRIES):
            try:
                return query(*args)
            except FileNotFoundError:
                if attempt == RENAME_RETRIES - 1:
                    raise
                self.files.invalidate()

    def _read(
        self,
        fields: list[str],
        start: float,
        end: float,
        min_stride: float | None,
        method: str,
        max_samples: int | None,
        progressive: bool = False,
    ) -> Result:
        snapshot = self.files.refresh()
        specs, files = snapshot.current()
        data: dict[str, np.ndarray] = {}
        by_tl: dict[str, list[str]] = {}
        for name in fields:
            if name in specs:
                by_tl.setdefault(specs[name][0], []).append(name)
                data[name] = missing_values(specs[name][1].type, 0)
            else:
                data[name] = np.zeros(0)
        result = Result()
        fills: list[tuple[str, Iterator[int]]] = []
        budget = max_samples
        for tl, names in by_tl.items():
            types = {k: specs[k][1].type for k in names}
            (lo, hi), growing = snapshot.overlapping_split(files.get(tl, []), tl, start, end)
            if hi <= lo and not growing:
                continue
            overlapping = _Overlap(snapshot.arrays.get(tl), lo, hi, growing)
            fill = None
            if min_stride is None:
                t, cols, fill = self._read_raw(
                    overlapping, tl, names, types, start, end, budget, (max_samples, len(fields))
                )
                stride = None
            else:
                stride, level = choose_stride(min_stride)
                if level is None:
                    if budget is not None and max_samples is not None:
                        self._check_bins(
                            overlapping, tl, len(names), start, end, stride, method, budget, (max_samples, len(fields))
                        )
                    t, cols, _ = self._read_raw(overlapping, tl, names, types, start, end, None, lazy=False)
                    t, cols = downsample_columns(t, cols, stride, method, (start, end))
                else:
                    t, cols = self._read_summary(
                        snapshot, overlapping, tl, names, types, start, end, stride, level, method
                    )
            if t.size == 0:
                continue
            if budget is not None and max_samples is not None:
                if t.size * len(names) > budget:  # counted over the whole request
                    raise too_much_data(
                        max_samples, max_samples - budget + t.size * len(names), len(fields), start, end, method
                    )
                budget -= t.size * len(names)
            data.update(cols)
            result.timelines[tl] = TimelineData(t, finalized_until(files[tl], tl, end, stride, snapshot.writer_active))
            if fill is not None:
                fills.append((tl, fill))
        result.data = data
        result.field_timeline = {name: tl for tl, names in by_tl.items() if tl in result.timelines for name in names}
        if fills:
            result.filled.update((tl, 0) for tl, _ in fills)
            result.pending = _fill_in_turn(result.filled, fills)
            if not progressive:
                result.complete()
        return result

    def _read_raw(
        self,
        overlapping: _Overlap,
        tl: str,
        names: list[str],
        types: dict[str, str],
        start: float,
        end: float,
        budget: int | None,
        request: tuple[int | None, int] = (None, 0),
        lazy: bool = True,
    ) -> tuple[np.ndarray, dict[str, np.ndarray], Iterator[int] | None]:
        """Raw samples of ``names`` in ``[start, end)``, after checking the budget.

        ``request`` is the whole request's ``(max_samples, fields asked)``, for
        the refusal's message (``budget`` is what is left of ``max_samples``).

        Returns ``(t, columns, fill)``. The arrays have their final length;
        with ``fill`` not None, the rows of immutable files are still to be
        read: each step of ``fill`` reads a slab of them into place
        (:data:`FILL_BYTES`, then doubling) and yields how many leading rows
        are complete. Rows of a
        growing file are read at once (it may hold fewer rows of a field
        than of times), and so is everything when a field holds strings
        (no fixed width to allocate) or ``lazy`` is False.
        """
        spans = [(f, f.index(tl, start), f.index(tl, end)) for f in overlapping.files()]
        if budget is not None:
            total = sum(i1 - i0 for _, i0, i1 in spans) * len(names)
            if total > budget:
                limit, asked = request
                limit = budget if limit is None else limit
                raise too_much_data(limit, limit - budget + total, max(asked, len(names)), start, end, "mean")
        spans = [s for s in spans if s[2] > s[1]]
        if any(types[k] == "string" for k in names):
            return (*self._read_joined(spans, tl, names, types), None)
        pieces: list[tuple[ReadableFile, int, int, tuple | None]] = []
        for f, i0, i1 in spans:
            if f.immutable:
                self._reads.note(f.seq)
                pieces.append((f, i0, i1, None))
            else:  # read now, at the length every column really has
                t, part = self._read_rows(f, tl, names, types, i0, i1)
                pieces.append((f, i0, i0 + t.size, (t, part)))
        total = sum(i1 - i0 for _, i0, i1, _ in pieces)
        t_out = np.empty(total)
        cols = {k: np.empty(total, dtype=missing_values(types[k], 0).dtype) for k in names}
        at = 0
        for _, i0, i1, eager in pieces:
            if eager is not None:
                t_out[at : at + i1 - i0] = eager[0]
                for k in names:
                    cols[k][at : at + i1 - i0] = eager[1][k]
            at += i1 - i0
        fill = _fill(pieces, tl, names, types, t_out, cols, self.files.handles)
        if not lazy or total == 0:
            for _ in fill:
                pass
            return t_out, cols, None
        return t_out, cols, fill

    @staticmethod
    def _check_bins(
        overlapping: _Overlap,
        tl: str,
        nfields: int,
        start: float,
        end: float,
        stride: float,
        method: str,
        budget: int,
        request: tuple[int, int],
    ) -> None:
        """Refuse a query binned from raw samples over the budget before reading any value.

        A reply holds at most one row per bin of the range and one per raw
        sample; when both bounds exceed ``budget``, the times alone are read,
        one file at a time, and the non-empty bins counted, so a query that
        will be refused costs one file's times in memory, not every field of
        the range.
        """
        per_bin = nfields * (2 if method == "minmax" else 1)
        if (math.floor(end / stride) - math.floor(start / stride) + 1) * per_bin <= budget:
            return
        spans = [(f, f.index(tl, start), f.index(tl, end)) for f in overlapping.files()]
        if sum(i1 - i0 for _, i0, i1 in spans) * per_bin <= budget:
            return
        limit, asked = request
        rows, last = 0, None
        for f, i0, i1 in spans:
            if i1 <= i0:
                continue
            bins = np.unique(bin_index(f.read_t(tl, i0, i1), stride))
            rows += bins.size - int(last is not None and bins.size > 0 and bins[0] == last)
            last = bins[-1] if bins.size else last
            if rows * per_bin > budget:
                raise too_much_data(limit, limit - budget + rows * per_bin, asked, start, end, method)

    @staticmethod
    def _read_rows(
        f: ReadableFile, tl: str, names: list[str], types: dict[str, str], i0: int, i1: int
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Rows ``[i0, i1)`` of one file as new arrays, cut to the shortest column."""
        t = f.read_t(tl, i0, i1)
        info = f.timelines[tl]
        part = {}
        for k in names:
            if k in info.fields and info.fields[k].type == types[k]:
                part[k] = f.read_field(tl, k, i0, i1)
            else:
                part[k] = missing_values(types[k], t.size)
        n = min([t.size] + [v.size for v in part.values()])  # growing file: lengths may differ
        return t[:n], {k: v[:n] for k, v in part.items()}

    def _read_joined(
        self, spans: list, tl: str, names: list[str], types: dict[str, str]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Every file's rows read, then joined (string fields: no fixed width)."""
        ts: list[np.ndarray] = []
        cols: dict[str, list[np.ndarray]] = {k: [] for k in names}
        for f, i0, i1 in spans:
            t, part = self._read_rows(f, tl, names, types, i0, i1)
            ts.append(t)
            for k in names:
                cols[k].append(part[k])
        if not ts:
            return np.zeros(0), {k: missing_values(types[k], 0) for k in names}
        return np.concatenate(ts), {k: np.concatenate(v) for k, v in cols.items()}

    def _read_summary(
        self,
        snapshot: Snapshot,
        overlapping: _Overlap,
        tl: str,
        names: list[str],
        types: dict[str, str],
        start: float,
        end: float,
        stride: float,
        level: int,
        method: str,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Downsample from summary rows (raw samples only at the edges)."""
        nums = [k for k in names if types[k] in ("number", "bool")]
        strs = [k for k in names if k not in nums]
        bins_parts: list[np.ndarray] = []
        stat_parts: list[BucketStats] = []
        arrays = overlapping.arrays
        steps = (
            plan_summary_read(arrays, overlapping.lo, overlapping.hi, overlapping.growing, start, end, level)
            if arrays is not None
            else [Edge(f) for f in overlapping.growing]
        )
        for step in steps:
            if not isinstance(step, Edge):
                bins, stats = self._runs.reduced(
                    (tl, level, tuple(nums)),
                    snapshot.complete_seqs[tl],
                    int(arrays.seq[step.lo]),
                    int(arrays.seq[step.hi - 1]),
                    lambda seqs: self._load_run(snapshot, tl, nums, level, seqs),
                    int(round(stride / WIDTHS[level])),
                    NEEDS[method],
                )
                bins_parts.append(bins)
                stat_parts.append(stats)
                continue
            f = step.file
            info = f.timelines[tl]
            columns = [info.column(k) for k in nums]
            for piece in plan_cover(start, end, level, f.coverage(tl)):
                if piece.level is None:
                    i0, i1 = f.index(tl, piece.lo), f.index(tl, piece.hi)
                    if i1 <= i0:
                        continue
                    t = f.read_t(tl, i0, i1)
                    values = np.empty((t.size, len(nums)))
                    for j, k in enumerate(nums):
                        values[:, j] = (f.read_field(tl, k, i0, i1) if columns[j] >= 0 else np.full(t.size, np.nan))[
                            : t.size
                        ]
                    bins_parts.append(bin_index(t, stride))
                    stat_parts.append(sample_stats(values))
                else:
                    bucket, stats = f.level(tl, piece.level)
                    a, b = np.searchsorted(bucket, [piece.k_lo, piece.k_hi])
                    if b <= a:
                        continue
                    factor = int(round(stride / WIDTHS[piece.level]))
                    bins_parts.append(np.floor_divide(bucket[a:b], factor))
                    stat_parts.append(select_columns(stats.take(slice(a, b)), columns))
        bins = np.concatenate(bins_parts) if bins_parts else np.zeros(0, np.int64)
        stats = BucketStats.concat(stat_parts, len(nums))
        out_bins, reduced = reduce_buckets(bins, stats, NEEDS[method])
        t_out, v = finish(out_bins, reduced, stride, method, (start, end))
        out = {k: v[:, j] for j, k in enumerate(nums)}
        if strs:
            out.update(self._strings_in_bins(overlapping, tl, strs, types, start, end, stride, method, out_bins))
        return t_out, {k: out[k] for k in names}

    def _strings_in_bins(
        self,
        overlapping: _Overlap,
        tl: str,
        strs: list[str],
        types: dict[str, str],
        start: float,
        end: float,
        stride: float,
        method: str,
        out_bins: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """String fields (no summaries): raw samples picked per output bin."""
        t_raw, raw, _ = self._read_raw(overlapping, tl, strs, types, start, end, None, lazy=False)
        raw_bins, starts = sorted_bins(t_raw, stride)
        pos = np.clip(np.searchsorted(raw_bins, out_bins), 0, max(raw_bins.size - 1, 0))
        hit = (pos < raw_bins.size) & (raw_bins[pos] == out_bins) if raw_bins.size else np.zeros(out_bins.size, bool)
        per_bin = 2 if method == "minmax" else 1
        out = {}
        for k in strs:
            got = downsample_strings(starts, raw[k], method)
            res = np.full(out_bins.size * per_bin, "", dtype=got.dtype if got.size else str)
            for r in range(per_bin):
                res[r::per_bin][hit] = got[r::per_bin][pos[hit]]
            out[k] = res
        return out

    def _load_run(self, snapshot: Snapshot, tl: str, nums: list[str], level: int, seqs: np.ndarray) -> RunRows:
        """Concatenated level rows of the given complete files (index first, else the files)."""
        by_seq = snapshot.by_seq
        files = [by_seq[s] for s in np.asarray(seqs).tolist()]
        tables = self.files.index_tables(files, tl, level)
        if tables is None:
            tables = [f.table(tl, level) for f in files]
        infos = [f.timelines[tl] for f in files]
        buckets, stats = [], []
        i, n = 0, len(files)
        while i < n:  # files sharing a field layout are split in one go
            numeric = infos[i].numeric
            j = i + 1
            while j < n and (infos[j].numeric is numeric or infos[j].numeric == numeric):
                j += 1
            block = np.concatenate(tables[i:j]) if j - i > 1 else tables[i]
            bucket, block_stats = split_table(block)
            buckets.append(bucket)
            stats.append(select_columns(block_stats, [infos[i].column(x) for x in nums]))
            i = j
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum([t.shape[0] for t in tables], out=offsets[1:])
        bucket = np.concatenate(buckets) if buckets else np.zeros(0, np.int64)
        return RunRows(np.asarray(seqs, np.int64), offsets, bucket, BucketStats.concat(stats, len(nums)))

    def close(self) -> None:
        """Release every HDF5 handle and the index (idempotent)."""
        self.files.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Times a query restarts because a file was renamed under it (each file is
#: renamed at most twice in its life, so this never runs out in practice).
RENAME_RETRIES = 8


class _ReadLog(threading.local):
    """Per thread, the sequence numbers of the files the current query read."""

    touched: set[int] | None = None

    def note(self, seq: int) -> None:
        """Record that file ``seq`` was read (when a query is under way)."""
        touched = self.touched
        if touched is not None:
            touched.add(seq)


class _Overlap:
    """The files overlapping a query: a slice of the timeline's immutable files, then growing ones."""

    def __init__(self, arrays, lo: int, hi: int, growing: list[ReadableFile]) -> None:
        self.arrays, self.lo, self.hi, self.growing = arrays, lo, hi, growing

    def files(self) -> list[ReadableFile]:
        """Every overlapping file, in order."""
        head = self.arrays.files[self.lo : self.hi] if self.arrays is not None else []
        return head + self.growing


#: Bytes of rows (times and values) the first step of a progressive read fills,
#: so that the first part can leave soon; each next step reads twice as many
#: rows, up to :data:`FILL_MAX_BYTES` (fewer, larger HDF5 reads cost less CPU:
#: 64 Ki-row slabs read at about 2/3 the speed of whole-file reads).
FILL_BYTES = 2**18
FILL_MAX_BYTES = 2**23


def _fill(
    pieces: list,
    tl: str,
    names: list[str],
    types: dict[str, str],
    t_out: np.ndarray,
    cols: dict[str, np.ndarray],
    handles,
) -> Iterator[int]:
    """Read the rows of immutable files into ``t_out`` and ``cols``, a slab at a time.

    Yields the number of leading rows complete after each slab. Raises
    :class:`RuntimeError` if the reader (``handles``) was closed before
    the rows were read: a file opened then would stay open for good.
    """
    row_bytes = 8 + sum(cols[k].dtype.itemsize for k in names)
    step = max(1, FILL_BYTES // row_bytes)
    most = max(step, FILL_MAX_BYTES // row_bytes)
    at = 0
    for f, i0, i1, eager in pieces:
        if eager is None:
            info = f.timelines[tl]
            a = i0
            while a < i1:
                if handles.closed:
                    raise RuntimeError(
                        "the archive reader was closed before this progressive result was read to the end"
                    )
                b = min(i1, a + step)
                step = min(most, 2 * step)
                o0, o1 = at + a - i0, at + b - i0
                columns: list[tuple[str | None, np.ndarray]] = [(None, t_out[o0:o1])]
                for k in names:
                    if k in info.fields and info.fields[k].type == types[k]:
                        columns.append((k, cols[k][o0:o1]))
                    else:
                        cols[k][o0:o1] = missing_values(types[k], 1)[0]
                f.read_into(tl, columns, a, b)
                a = b
                yield o1
        at += i1 - i0
    yield at


def _fill_in_turn(filled: dict[str, int], fills: list[tuple[str, Iterator[int]]]) -> Iterator[None]:
    """Run each timeline's fill in turn, recording its complete rows in ``filled``."""
    for tl, fill in fills:
        for rows in fill:
            filled[tl] = rows
            yield None
        filled.pop(tl, None)


__all__ = ["ArchiveReader", "LEVELS"]
