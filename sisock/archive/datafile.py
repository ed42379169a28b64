"""One archive file as a reader sees it: what it holds and how to read it.

A :class:`ReadableFile` knows the file's timelines (fields, span, sample
count) either from the archive index (no file open) or by reading the file
(:meth:`ReadableFile.load`).  Reads borrow an HDF5 handle from the owning
reader's :class:`~sisock.archive.handles.HandleCache` (the process's one
handle per file); summary tables of the coarse levels come from the index
when it holds them.

``complete`` files (cleanly closed) never change and have all their summary
rows; ``immutable`` files (closed or crashed) never change; the one growing
file of a live writer is refreshed on every query.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sisock.core.downsample import BucketStats
from . import h5io
from .handles import HandleCache
from sisock.core.protocol import FieldSpec, missing_values
from .summary import LEVELS, WIDTHS, split_table


@dataclass(slots=True)
class TimelineInfo:
    """What a reader knows about one timeline in one file."""

    fields: dict[str, FieldSpec]
    numeric: list[str]
    min_level: int = 0
    count: int = 0
    t_first: float = np.nan
    t_last: float = np.nan
    #: Summary tables read from a growing file (dropped at each refresh).
    levels: dict[int, tuple[np.ndarray, BucketStats]] | None = None

    def column(self, name: str) -> int:
        """Summary column of a numeric field, or -1 if this file lacks it."""
        try:
            return self.numeric.index(name)
        except ValueError:
            return -1


class ReadableFile:
    """Read-only view of one archive file (one per file: kept small with ``__slots__``).

    Parameters
    ----------
    path : str
        File path.
    seq : int
        Sequence number in its directory.
    complete : bool
        True if the file was closed cleanly (immutable, full summaries).
    immutable : bool
        True if nobody writes the file any more (closed or crashed).
    handles : HandleCache
        The owning reader's open files.
    on_read : callable, optional
        Called with ``seq`` whenever data or summary rows are read from the file.
    level_cache : object, optional
        ``get(key)`` / ``put(key, value, nbytes)`` store for summary tables
        of immutable files (bounded by the reader).
    """

    __slots__ = (
        "path",
        "seq",
        "complete",
        "immutable",
        "timelines",
        "loaded",
        "index_record",
        "_handles",
        "_on_read",
        "_level_cache",
        "_lock",
    )

    def __init__(
        self,
        path: str,
        seq: int,
        complete: bool,
        immutable: bool,
        handles: HandleCache,
        on_read: Callable[[int], None] | None = None,
        level_cache=None,
    ) -> None:
        self.path = path
        self.seq = seq
        self.complete = complete
        self.immutable = immutable
        self.timelines: dict[str, TimelineInfo] = {}
        self.loaded = False
        #: The archive index's record (:class:`~sisock.archive.index.IndexedFile`)
        #: when the file is described by it.
        self.index_record = None
        self._handles = handles
        self._on_read = on_read
        self._level_cache = level_cache
        self._lock = threading.Lock()

    @classmethod
    def from_index(
        cls, path: str, seq: int, complete: bool, handles: HandleCache, record, on_read=None, level_cache=None
    ) -> ReadableFile:
        """A file described by its index record (nothing is opened)."""
        f = cls(path, seq, complete, True, handles, on_read, level_cache)
        f.timelines = record.timelines
        f.index_record = record
        f.loaded = True
        return f

    def _mark(self) -> None:
        if self._on_read is not None:
            self._on_read(self.seq)

    # -- metadata
    def load(self) -> None:
        """Read (or, for a growing file, refresh) per-timeline metadata."""
        if self.loaded and self.immutable:
            return
        with self._lock, self._handles.borrow(self.path, live=not self.immutable) as h:
            if not self.loaded:
                self.timelines = {
                    tl: TimelineInfo(specs, numeric, min_level)
                    for tl, (specs, numeric, min_level) in h5io.read_layout(h).items()
                }
            for tl, info in self.timelines.items():
                info.count, info.t_first, info.t_last = h5io.read_span(h, tl, not self.immutable)
                if not self.immutable:
                    info.levels = {}
            self.loaded = True

    def release(self) -> None:
        """Close the HDF5 handle, now or when the reads using it end."""
        self._handles.discard(self.path)

    # -- summary tables
    def level(self, timeline: str, i: int) -> tuple[np.ndarray, BucketStats]:
        """Bucket indices and statistics of summary level ``i``."""
        info = self.timelines[timeline]
        if i < info.min_level:  # not stored for this timeline
            return np.zeros(0, np.int64), BucketStats.empty(len(info.numeric))
        if not self.immutable:
            if info.levels is None:
                info.levels = {}
            got = info.levels.get(i)
            if got is None:
                got = info.levels[i] = split_table(self._read_table(timeline, i))
            return got
        key = (self.path, timeline, i)
        got = self._level_cache.get(key) if self._level_cache is not None else None
        if got is None:
            got = split_table(self.table(timeline, i))
            if self._level_cache is not None:
                self._level_cache.put(key, got, got[0].nbytes * (1 + 8 * max(1, len(info.numeric))))
        return got

    def table(self, timeline: str, i: int) -> np.ndarray:
        """The stored summary table of level ``i`` (from the index when it has it)."""
        if self.index_record is not None:
            table = self.index_record.table(timeline, i)
            if table is not None:
                return table
        return self._read_table(timeline, i)

    def _read_table(self, timeline: str, i: int) -> np.ndarray:
        self._mark()
        with self._handles.borrow(self.path, live=not self.immutable) as h:
            return h5io.read_level_table(h, timeline, i, not self.immutable)

    def coverage(self, timeline: str) -> list[float]:
        """Per level, bucket index below which rows are complete."""
        lo = self.timelines[timeline].min_level
        if self.complete:
            return [-np.inf] * lo + [np.inf] * (len(LEVELS) - lo)
        out = [-np.inf] * lo
        for i in range(lo, len(LEVELS)):
            k, _ = self.level(timeline, i)
            out.append(float(k[-1] + 1) if len(k) else -np.inf)
        return out

    # -- raw samples
    def read_t(self, timeline: str, i0: int, i1: int) -> np.ndarray:
        """Times ``[i0, i1)``."""
        if i1 <= i0:
            return np.zeros(0)
        self._mark()
        with self._handles.borrow(self.path, live=not self.immutable) as h:
            return h5io.read_times(h, timeline, i0, i1)

    def read_field(self, timeline: str, name: str, i0: int, i1: int) -> np.ndarray:
        """Values ``[i0, i1)`` of a field in the API dtype (float64, bool, str)."""
        ftype = self.timelines[timeline].fields[name].type
        if i1 <= i0:
            return missing_values(ftype, 0)
        self._mark()
        with self._handles.borrow(self.path, live=not self.immutable) as h:
            return h5io.read_values(h, timeline, name, ftype, i0, i1, not self.immutable)

    def read_into(self, timeline: str, columns: list[tuple[str | None, np.ndarray]], i0: int, i1: int) -> None:
        """Rows ``[i0, i1)`` of several columns into place, the file borrowed once.

        ``columns`` pairs a name (None for the times, else a number or bool
        field of this file) with ``out``, a C-contiguous slice of the result
        array (float64 for times and numbers, bool for bools); nothing else
        is allocated for times and numbers.
        """
        if i1 <= i0:
            return
        fields = self.timelines[timeline].fields
        self._mark()
        with self._handles.borrow(self.path, live=not self.immutable) as h:
            for name, out in columns:
                if name is None or fields[name].type == "number":
                    h5io.read_into(h, timeline, name, i0, i1, out, not self.immutable)
                else:
                    out[:] = h5io.read_values(h, timeline, name, fields[name].type, i0, i1, not self.immutable)

    def index(self, timeline: str, x: float) -> int:
        """Number of samples with ``t < x`` (binary search guided by the finest level)."""
        info = self.timelines[timeline]
        n = info.count
        if n == 0 or not x > info.t_first:
            return 0
        if x > info.t_last:
            return n
        bucket, stats = self.level(timeline, info.min_level)
        samples_before = np.concatenate(([0], np.cumsum(stats.n)))
        bucket_x = int(np.floor(x / WIDTHS[info.min_level]))  # exact: the width is a power of two
        j = int(np.searchsorted(bucket, bucket_x))
        lo = min(int(samples_before[j]), n)
        if j < len(bucket):
            hi = min(int(samples_before[j + 1]) if bucket[j] == bucket_x else lo, n)
        else:
            hi = n
        if hi <= lo:
            return lo
        return lo + int(np.searchsorted(self.read_t(timeline, lo, hi), x, side="left"))
