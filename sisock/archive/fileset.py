"""The files of one archive directory as one reader sees them.

:class:`FileSet` joins the directory listing (:mod:`.catalog`, the truth)
with the archive index (:mod:`.index`, a cache of what each immutable file
holds): a listed file with a matching index record is described without
opening it; any other file (not indexed, changed, crashed before the next
writer indexed it, or still being written) is opened and read directly.
An index record whose file is gone is ignored.

Each refresh returns a :class:`Snapshot`, an immutable summary of the
immutable files (plus the growing ones), so that queries on several
threads work on a consistent view while the next refresh builds another.
The file set holds the reader's share of the process's HDF5 handles
(:class:`.handles.HandleCache`) and the cache of per-file summary tables
(:class:`.rowcache.ByteLRU`).  A file the writer is renaming can vanish
between the listing and a read: the read raises ``FileNotFoundError``,
and the reader lists again (:meth:`FileSet.invalidate`) and retries.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import catalog, h5io
from . import index as archive_index
from .datafile import ReadableFile
from .handles import HandleCache
from .rowcache import ByteLRU
from sisock.core.protocol import FieldSpec

log = logging.getLogger(__name__)


@dataclass
class TimelineFiles:
    """The immutable files with data on one timeline, as arrays (sequence order).

    ``t_first_sorted`` and ``t_last_sorted`` are the running maxima of the
    spans (non-decreasing, for binary search); the others are per file.
    """

    files: list[ReadableFile]
    seq: np.ndarray
    t_first: np.ndarray
    t_last: np.ndarray
    count: np.ndarray
    complete: np.ndarray
    min_level: np.ndarray
    t_first_sorted: np.ndarray
    t_last_sorted: np.ndarray

    @staticmethod
    def of(timeline: str, files: list[ReadableFile]) -> TimelineFiles:
        infos = [f.timelines[timeline] for f in files]
        t_first = np.array([i.t_first for i in infos], dtype=np.float64)
        t_last = np.array([i.t_last for i in infos], dtype=np.float64)
        return TimelineFiles(
            files,
            np.array([f.seq for f in files], dtype=np.int64),
            t_first,
            t_last,
            np.array([i.count for i in infos], dtype=np.int64),
            np.array([f.complete for f in files], dtype=bool),
            np.array([i.min_level for i in infos], dtype=np.int64),
            np.maximum.accumulate(t_first) if files else t_first,
            np.maximum.accumulate(t_last) if files else t_last,
        )

    def overlapping(self, start: float, end: float) -> tuple[int, int]:
        """Index range of the files with samples in ``[start, end)``."""
        i0 = int(np.searchsorted(self.t_last_sorted, start, side="left"))
        i1 = int(np.searchsorted(self.t_first_sorted, end, side="left"))
        return i0, max(i0, i1)


@dataclass
class Snapshot:
    """What the files of the directory hold, as of one refresh.

    Attributes
    ----------
    fields : dict
        Field name -> ``(timeline, spec)`` over the immutable files (the
        newest definition wins).
    files : dict
        Timeline -> immutable files with data on it, in sequence order.
    arrays : dict
        Timeline -> :class:`TimelineFiles` of ``files[timeline]``.
    complete_seqs : dict
        Timeline -> sequence numbers of the complete files with data.
    growing : list
        Files a live writer may still append to (refreshed per query).
    """

    fields: dict[str, tuple[str, FieldSpec]]
    files: dict[str, list[ReadableFile]]
    arrays: dict[str, TimelineFiles]
    complete_seqs: dict[str, np.ndarray]
    growing: list[ReadableFile]
    by_seq: dict[int, ReadableFile]

    @staticmethod
    def build(files: dict[int, ReadableFile]) -> Snapshot:
        """Summarise ``files`` (sequence number -> file)."""
        fields: dict[str, tuple[str, FieldSpec]] = {}
        per_timeline: dict[str, list[ReadableFile]] = {}
        complete: dict[str, list[int]] = {}
        growing = []
        for seq in sorted(files):
            f = files[seq]
            if not f.immutable:
                growing.append(f)
                continue
            for tl, info in f.timelines.items():
                for name, spec in info.fields.items():
                    fields[name] = (tl, spec)
                if info.count:
                    per_timeline.setdefault(tl, []).append(f)
                    if f.complete:
                        complete.setdefault(tl, []).append(seq)
        arrays = {tl: TimelineFiles.of(tl, fl) for tl, fl in per_timeline.items()}
        return Snapshot(
            fields,
            per_timeline,
            arrays,
            {k: np.asarray(v, dtype=np.int64) for k, v in complete.items()},
            growing,
            dict(files),
        )

    def current(self) -> tuple[dict[str, tuple[str, FieldSpec]], dict[str, list[ReadableFile]]]:
        """Fields and files per timeline, growing files included."""
        if not self.growing:
            return self.fields, self.files
        fields = dict(self.fields)
        files = {k: list(v) for k, v in self.files.items()}
        for f in self.growing:
            for tl, info in f.timelines.items():
                for name, spec in info.fields.items():
                    fields[name] = (tl, spec)
                if info.count:
                    files.setdefault(tl, []).append(f)
        return fields, files

    def overlapping(self, files: list[ReadableFile], timeline: str, start: float, end: float) -> list[ReadableFile]:
        """The files of ``files`` (from :meth:`current`) with samples in ``[start, end)``."""
        immutable, growing = self.overlapping_split(files, timeline, start, end)
        arrays = self.arrays.get(timeline)
        return (arrays.files[immutable[0] : immutable[1]] if arrays else []) + growing

    def overlapping_split(
        self, files: list[ReadableFile], timeline: str, start: float, end: float
    ) -> tuple[tuple[int, int], list[ReadableFile]]:
        """Overlapping files: an index range into ``arrays[timeline]``, and growing files."""
        arrays = self.arrays.get(timeline)
        n_immutable = 0
        span = (0, 0)
        if arrays is not None:
            n_immutable = arrays.seq.size
            span = arrays.overlapping(start, end)
        growing = []
        for f in files[n_immutable:]:
            info = f.timelines[timeline]
            if info.t_first < end and info.t_last >= start:
                growing.append(f)
        return span, growing

    @property
    def writer_active(self) -> bool:
        """True while a writer has a file open."""
        return bool(self.growing)


class FileSet:
    """The archive files of a directory, their handles and summary tables.

    Parameters
    ----------
    directory : str
        The archive directory.
    max_open_files : int
        HDF5 handles kept open between reads.
    table_cache_bytes : int
        Budget of the per-file summary tables kept in memory.
    on_read : callable, optional
        Called with a file's sequence number whenever data is read from it.
    """

    def __init__(
        self,
        directory: str,
        max_open_files: int = 64,
        table_cache_bytes: int = 64 * 2**20,
        on_read: Callable[[int], None] | None = None,
    ) -> None:
        self.directory = directory
        self.handles = HandleCache(h5io.pool(), max_open_files)
        self.tables = ByteLRU(table_cache_bytes)
        self._on_read = on_read
        self._catalog = catalog.Catalog(directory)
        self._index = archive_index.IndexReader(directory)
        self._files: dict[int, ReadableFile] = {}
        self._snapshot = Snapshot.build({})
        self._lock = threading.Lock()
        #: Files described from the index and files read directly, at the last change.
        self.from_index = 0
        self.read_directly = 0

    def refresh(self) -> Snapshot:
        """Pick up new, renamed and vanished files; refresh growing files."""
        with self._lock:
            # a first refresh creates a few objects per file: cyclic garbage collection
            # passes triggered by them would cost more than the work itself
            collecting = gc.isenabled()
            gc.disable()
            try:
                for _ in range(3):
                    if self._refresh():
                        break
            finally:
                if collecting:
                    gc.enable()
            return self._snapshot

    def _refresh(self) -> bool:
        listing_changed = self._catalog.refresh()
        index_changed = self._index.refresh()
        if not (listing_changed or index_changed):
            return self._load(self._snapshot.growing)
        entries = self._catalog.entries
        records = self._index.records
        for seq in list(self._files):
            if seq not in entries:
                self._files.pop(seq).release()
        direct = []
        counts = [0, 0]
        for seq, e in entries.items():
            f = self._files.get(seq)
            record = records.get(e.name)
            indexed = record is not None and record.matches(e)
            if f is not None and (
                f.path != e.path  # closed or marked crashed since
                or (indexed and f.index_record is not record)
            ):  # (re)indexed
                f.release()
                f = None
            if f is None:
                if indexed:
                    f = self._from_record(e, record)
                else:
                    f = ReadableFile(
                        e.path,
                        seq,
                        e.state == catalog.CLOSED,
                        e.state != catalog.OPEN,
                        self.handles,
                        self._on_read,
                        self.tables,
                    )
                self._files[seq] = f
            if not f.loaded or not f.immutable:
                direct.append(f)
            counts[f.index_record is None] += 1
        self.from_index, self.read_directly = counts
        if not self._load(direct, release=True):
            return False
        self._snapshot = Snapshot.build(self._files)
        return True

    def _from_record(self, entry: catalog.Entry, record: archive_index.IndexedFile) -> ReadableFile:
        return ReadableFile.from_index(
            entry.path, entry.seq, entry.state == catalog.CLOSED, self.handles, record, self._on_read, self.tables
        )

    def _load(self, files: list[ReadableFile], release: bool = False) -> bool:
        """Read metadata of files not described by the index; False to list again."""
        for f in files:
            try:
                f.load()
                if release and f.immutable:
                    f.release()
            except (OSError, KeyError) as exc:
                if not os.path.exists(f.path):  # renamed under us: list again
                    self._catalog.invalidate()
                    self._files.pop(f.seq, None)
                    return False
                # a file being written is retried at the next refresh; a damaged
                # immutable file is worth an error line
                (log.debug if not f.immutable else log.error)("archive: skipping unreadable file %s (%s)", f.path, exc)
                self._files.pop(f.seq).release()
                self._catalog.invalidate()
        return True

    def invalidate(self) -> None:
        """List the directory again at the next refresh (a file was renamed under a read)."""
        self._catalog.invalidate()

    def index_tables(self, files: list[ReadableFile], timeline: str, level: int) -> list[np.ndarray] | None:
        """Summary tables of several files from the index (None if one lacks them)."""
        parts = []
        for f in files:
            record = f.index_record
            part = record.part(timeline, level) if record is not None else None
            if part is None:
                return None
            parts.append(part)
        try:
            return archive_index.read_tables(parts)
        except archive_index.IndexDamaged as exc:
            log.warning("archive index: %s; reading the files instead", exc)
            return None

    def close(self) -> None:
        """Release every handle and the index (idempotent)."""
        with self._lock:
            self.handles.close()
            self._index.close()
