"""Append-only archive writer (one per directory).

Behaviour
---------
* :meth:`ArchiveWriter.append` validates a batch completely (known timeline
  and fields, lengths, finite times strictly increasing within the batch and
  after the last time of the timeline, also across restarts) before keeping
  anything: a rejected batch leaves no trace.
* Accepted samples are buffered and written at :meth:`~ArchiveWriter.flush`,
  which happens on :meth:`~ArchiveWriter.append` once ``flush_interval``
  seconds have passed since the last flush, when a caller's timer calls
  :meth:`~ArchiveWriter.maybe_flush`, and on close.  A flush makes the data
  durable and visible to SWMR readers: a ``kill -9`` loses at most the data
  appended since the last flush (so at most ``flush_interval`` seconds of
  data when appends keep coming or ``maybe_flush`` is called on a timer).
* Missing fields in a batch are filled with NaN (number), ``""`` (string)
  or False (bool: HDF5 has no missing bool; use a number field for a flag
  that can be unknown).
* Files rotate when a sample reaches the end of the file's period
  (``floor(t_first / rotate_seconds) + 1`` periods, by *data* time, so that
  hourly files hold one clock hour) and after a flush leaves the file at
  ``rotate_bytes`` or more.  Defining a new timeline (or changing the fields
  of one) also starts a new file, because HDF5 cannot add objects to a file
  in SWMR mode.
* On start the writer takes the directory lock, renames files left
  ``.open.h5`` by a dead writer to ``.crashed.h5`` (never appended to again),
  brings the archive index up to date (:func:`sisock.archive.index.sync`:
  crashed files and files of older writers get their records) and reads
  the last times of every timeline from the newest file.
* Each file closed gets its record appended to the archive index
  (:mod:`sisock.archive.index`), so that readers learn what it holds
  without opening it.

Summaries are kept incrementally (see :mod:`sisock.archive.summary`).

Size and compression (measured, 1 field, float64)
-------------------------------------------------
* 1 Hz, hourly files, uncompressed: 28 bytes/sample (16 raw + ~6 summary
  + per-file overhead); Blosc-LZ4 (``compression="lz4"``) with large
  batches: 16 bytes/sample.
* 100 Hz with a flush every second: 16.7 bytes/sample uncompressed but
  19.2 with LZ4, because every flush rewrites the partial compressed chunk.
  Hence the default is no compression; use ``"lz4"`` for bulk imports.
* Reading compressed data costs about 2x; summaries are never compressed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from sisock.core.errors import BadArgument
from . import catalog
from . import digest as archive_digest
from . import index as archive_index
from .h5io import WritableFile, creating_path, encode_strings, numeric_fields, pool, read_root_attrs
from .lock import DirectoryLock
from sisock.core.protocol import FieldSpec, missing_values
from .summary import LEVELS, WIDTHS, SummaryAccumulator

log = logging.getLogger(__name__)

_BAD_NAME_CHARS = set("/\\\0")
#: A summary level is stored only if its buckets hold this many samples on average.
MIN_SAMPLES_PER_BUCKET = 4


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name or name.startswith(".") or set(name) & _BAD_NAME_CHARS:
        raise BadArgument(f"{kind} name must be a non-empty string without '/', '\\\\' or a leading '.'; got {name!r}")
    return name


@dataclass
class _Timeline:
    fields: dict[str, FieldSpec]
    numeric: list[str]
    last: float = -math.inf  # last accepted time (buffered or stored)
    pending_t: list[np.ndarray] = field(default_factory=list)
    pending_v: list[dict[str, np.ndarray]] = field(default_factory=list)


class _OpenFile:
    """The file being written and its per-timeline summary accumulators."""

    def __init__(
        self, wf: WritableFile, seq: int, stem_time: float, period_end: float, timelines: dict[str, _Timeline]
    ) -> None:
        self.wf = wf
        self.seq = seq
        self.stem_time = stem_time
        self.period_end = period_end
        self.fields = {k: dict(v.fields) for k, v in timelines.items()}
        self.acc = {k: SummaryAccumulator(len(v.numeric)) for k, v in timelines.items()}
        self.counts = {k: 0 for k in timelines}
        self.spans: dict[str, list[float]] = {}


class ArchiveWriter:
    """Write timelines into an archive directory.

    Parameters
    ----------
    directory : str or os.PathLike
        Archive directory (created if missing).
    flush_interval : float
        Maximum seconds between flushes while appends keep coming.
    rotate_seconds : float
        File period in seconds of data time (``inf`` disables).
    rotate_bytes : int
        Start a new file after a flush leaves the current one this big.
    compression : {None, "lz4", "gzip"}
        Compression of raw datasets (summaries are never compressed).
    chunk_rows : int
        Largest HDF5 chunk length of raw datasets.  Each new file sizes the
        chunks of a timeline to the number of samples the previous file got
        (next power of two, at least 64), so slow timelines do not waste
        space on mostly empty chunks.
    clock : callable
        Monotonic clock for the flush interval (tests).

    Raises
    ------
    sisock.archive.lock.ArchiveLocked
        If another live process writes the directory.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        flush_interval: float = 1.0,
        rotate_seconds: float = 3600.0,
        rotate_bytes: int = 256 * 2**20,
        compression: str | None = None,
        chunk_rows: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.flush_interval = float(flush_interval)
        self.rotate_seconds = float(rotate_seconds)
        self.rotate_bytes = int(rotate_bytes)
        self.compression = compression
        self.chunk_rows = int(chunk_rows)
        self._expected: dict[str, int] = {}  # samples per file seen last time, per timeline
        self._rates: dict[str, float] = {}  # sample rate seen in the last file, per timeline
        self._clock = clock
        self._lock = DirectoryLock(self.directory)
        self._lock.acquire()
        try:
            self._timelines: dict[str, _Timeline] = {}
            self._stored_last: dict[str, float] = {}
            self._file: _OpenFile | None = None
            #: Held while HDF5 files are changed; readers of this process hold it
            #: while they read the file being written (see sisock.archive.handles).
            self._io_lock = threading.RLock()
            self._last_flush = clock()
            self._closed = False
            #: Files closed (and indexed) since the index digest was last brought up to date.
            self._indexed_since_digest = 0
            self._recover()
        except BaseException:
            self._lock.release()
            raise

    # ------------------------------------------------------------- start-up
    def _recover(self) -> None:
        for name in os.listdir(self.directory):
            if name.endswith(creating_path("")):  # a file left half-created (holds no sample)
                os.unlink(os.path.join(self.directory, name))
        entries = catalog.scan(self.directory)
        for e in entries.values():
            if e.state == catalog.OPEN:
                new = catalog.with_state(e.path, catalog.CRASHED)
                os.rename(e.path, new)
                log.warning("archive file %s was left open by a dead writer; kept read-only as %s", e.path, new)
        try:
            archive_index.sync(self.directory)
        except OSError as exc:  # the index is a cache: readers manage without it
            log.error("archive index of %s not updated (%s)", self.directory, exc)
        entries = catalog.scan(self.directory)
        self._next_seq = (max(entries) + 1) if entries else 1
        self._last_stem = -math.inf
        for seq in sorted(entries, reverse=True):  # newest readable file
            path = entries[seq].path
            try:
                attrs = read_root_attrs(path)
            except OSError as exc:
                log.error("cannot read archive file %s (%s); trying an older one", path, exc)
                continue
            last = json.loads(attrs.get("last_times", "{}"))
            last.update(attrs["_t_last"])
            self._stored_last = {k: float(v) for k, v in last.items()}
            self._last_stem = catalog.stem_time(entries[max(entries)].path)
            break

    # ------------------------------------------------------------- API
    def define_timeline(self, timeline: str, fields: Mapping[str, FieldSpec]) -> None:
        """Declare a timeline and its fields (idempotent).

        Redefining with identical fields does nothing; different fields take
        effect in a new file.

        Raises
        ------
        BadArgument
            Bad names, no fields, or a field name used by another timeline.
        """
        self._check_open()
        _check_name("timeline", timeline)
        if not fields:
            raise BadArgument(f"timeline {timeline!r} needs at least one field")
        specs: dict[str, FieldSpec] = {}
        for name, spec in fields.items():
            _check_name("field", name)
            if not isinstance(spec, FieldSpec):
                raise BadArgument(f"field {name!r} of timeline {timeline!r}: expected a FieldSpec, got {spec!r}")
            for other, tl in self._timelines.items():
                if other != timeline and name in tl.fields:
                    raise BadArgument(
                        f"field {name!r} already belongs to timeline {other!r}; field names must be unique"
                    )
            specs[name] = spec
        old = self._timelines.get(timeline)
        if old is not None and old.fields == specs:
            return
        if old is not None:
            with self._io_lock:
                self._write_pending()
        self._timelines[timeline] = _Timeline(
            specs,
            numeric_fields(specs),
            last=old.last if old else self._stored_last.get(timeline, -math.inf),
        )

    def append(self, timeline: str, t: np.ndarray, values: Mapping[str, np.ndarray]) -> None:
        """Append a batch of samples to a timeline.

        Parameters
        ----------
        timeline : str
            A timeline declared with :meth:`define_timeline`.
        t : numpy.ndarray
            float64 UNIX seconds, strictly increasing and after the last
            time appended to this timeline.
        values : Mapping[str, numpy.ndarray]
            Field name to values, one per time; missing fields are filled.

        Raises
        ------
        BadArgument
            If anything is wrong with the batch; nothing is kept then.
        """
        self._check_open()
        tl = self._timelines.get(timeline)
        if tl is None:
            raise BadArgument(
                f"timeline {timeline!r} is not defined; call define_timeline first (defined: {sorted(self._timelines)})"
            )
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        n = t.size
        if n == 0:
            return
        if not np.isfinite(t).all():
            i = int(np.flatnonzero(~np.isfinite(t))[0])
            raise BadArgument(f"timeline {timeline!r}: times must be finite; t[{i}] = {t[i]!r}")
        d = np.diff(t)
        if (d <= 0).any():
            i = int(np.flatnonzero(d <= 0)[0])
            raise BadArgument(
                f"timeline {timeline!r}: times must be strictly increasing; "
                f"t[{i + 1}] = {t[i + 1]!r} <= t[{i}] = {t[i]!r}; nothing was written"
            )
        if not t[0] > tl.last:
            raise BadArgument(
                f"timeline {timeline!r}: t[0] = {t[0]!r} is not after the last appended time "
                f"{tl.last!r}; nothing was written"
            )
        unknown = set(values) - set(tl.fields)
        if unknown:
            raise BadArgument(f"timeline {timeline!r} has no field(s) {sorted(unknown)}; fields are {list(tl.fields)}")
        batch: dict[str, np.ndarray] = {}
        for name, spec in tl.fields.items():
            if name in values:
                v = np.asarray(values[name]).reshape(-1)
                if v.size != n:
                    raise BadArgument(f"timeline {timeline!r}: field {name!r} has {v.size} values for {n} times")
                batch[name] = _convert(timeline, name, spec.type, v)
            else:
                batch[name] = _convert(timeline, name, spec.type, missing_values(spec.type, n))
        tl.pending_t.append(t.copy())
        tl.pending_v.append(batch)
        tl.last = float(t[-1])
        self.maybe_flush()

    def maybe_flush(self) -> bool:
        """Flush if ``flush_interval`` has passed since the last flush.

        Returns
        -------
        bool
            True if a flush happened.
        """
        if self._closed:
            return False
        if self._clock() - self._last_flush >= self.flush_interval:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Write every buffered sample and make it durable and visible."""
        self._check_open()
        with self._io_lock:  # readers of this process never see a batch half written
            self._write_pending()
            if self._file is not None:
                self._file.wf.flush()
                if self._file.wf.size() >= self.rotate_bytes:
                    self._close_file()
        self._last_flush = self._clock()

    def close(self) -> None:
        """Flush, close the current file (renaming it complete) and unlock."""
        if self._closed:
            return
        try:
            with self._io_lock:
                self._write_pending()
                self._close_file()
        finally:
            self._closed = True
            self._lock.release()

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def current_file(self) -> str | None:
        """Path of the file being written, if any."""
        return self._file.wf.path if self._file else None

    def last_time(self, timeline: str) -> float | None:
        """Last accepted time of a timeline (None if it has none)."""
        tl = self._timelines.get(timeline)
        last = tl.last if tl else self._stored_last.get(timeline, -math.inf)
        return None if last == -math.inf else last

    # ------------------------------------------------------------- internals
    def _check_open(self) -> None:
        if self._closed:
            raise BadArgument("the archive writer is closed")

    def _write_pending(self) -> None:
        for name, tl in self._timelines.items():
            if not tl.pending_t:
                continue
            t = np.concatenate(tl.pending_t)
            vals = {k: np.concatenate([b[k] for b in tl.pending_v]) for k in tl.fields}
            tl.pending_t, tl.pending_v = [], []
            while t.size:
                f = self._file
                if f is None or f.fields.get(name) != tl.fields or t[0] >= f.period_end:
                    if f is not None:
                        self._close_file()
                    f = self._new_file(float(t[0]), {name: t.size})
                cut = int(np.searchsorted(t, f.period_end, side="left"))
                part_t, t = t[:cut], t[cut:]
                part = {k: v[:cut] for k, v in vals.items()}
                vals = {k: v[cut:] for k, v in vals.items()}
                self._write(f, name, tl, part_t, part)

    def _write(self, f: _OpenFile, name: str, tl: _Timeline, t: np.ndarray, vals: dict[str, np.ndarray]) -> None:
        stored = {k: (encode_strings(v) if tl.fields[k].type == "string" else v) for k, v in vals.items()}
        f.wf.append_raw(name, t, stored)
        f.counts[name] += t.size
        f.spans.setdefault(name, [float(t[0]), 0.0])[1] = float(t[-1])
        num = np.empty((t.size, len(tl.numeric)))
        for i, k in enumerate(tl.numeric):
            num[:, i] = vals[k]
        f.wf.append_summary(name, f.acc[name].add(t, num))
        self._stored_last[name] = float(t[-1])

    def _new_file(self, t0: float, hint: dict[str, int]) -> _OpenFile:
        seq = self._next_seq
        self._next_seq += 1
        stem_time = max(math.floor(t0), self._last_stem)
        self._last_stem = stem_time
        if math.isfinite(self.rotate_seconds) and self.rotate_seconds > 0:
            period_end = (math.floor(t0 / self.rotate_seconds) + 1) * self.rotate_seconds
        else:
            period_end = math.inf
        path = os.path.join(self.directory, catalog.file_name(stem_time, seq, catalog.OPEN))
        rows = [
            max(8, min(1024, int(self.rotate_seconds / w) + 2)) if math.isfinite(self.rotate_seconds) else 1024
            for w in WIDTHS
        ]
        specs = {k: v.fields for k, v in self._timelines.items()}
        chunks = {}
        for k, tl in self._timelines.items():
            rate = self._rates.get(k)
            per_period = int(rate * self.rotate_seconds) if rate and math.isfinite(self.rotate_seconds) else 0
            guess = per_period or self._expected.get(k) or hint.get(k) or sum(x.size for x in tl.pending_t) or 1024
            chunks[k] = int(min(self.chunk_rows, max(64, 2 ** math.ceil(math.log2(max(guess, 1))))))
        min_levels = {}
        for k in self._timelines:
            rate = self._rates.get(k)
            min_levels[k] = 0
            if rate:
                ok = [i for i, w in enumerate(WIDTHS) if rate * w >= MIN_SAMPLES_PER_BUCKET]
                min_levels[k] = ok[0] if ok else len(WIDTHS) - 1
        wf = WritableFile(
            path,
            seq,
            specs,
            dict(self._stored_last),
            compression=self.compression,
            chunk_rows=chunks,
            level_chunks=rows,
            min_levels=min_levels,
            lock=self._io_lock,
        )
        log.info("archive: started %s", path)
        self._file = _OpenFile(wf, seq, stem_time, period_end, self._timelines)
        return self._file

    def _close_file(self) -> None:
        f = self._file
        if f is None:
            return
        self._file = None
        for name, acc in f.acc.items():
            f.wf.append_summary(name, acc.close())
            if f.counts[name]:
                self._expected[name] = f.counts[name]
                t0, t1 = f.spans[name]
                if f.counts[name] > 1 and t1 > t0:
                    self._rates[name] = (f.counts[name] - 1) / (t1 - t0)
        final = catalog.with_state(f.wf.path, catalog.CLOSED)
        # readers of this process keep off the file meanwhile: our close is its real
        # close, so the size and mtime the index records are the file's final ones
        with pool().exclusive(f.wf.path):
            f.wf.close()
            os.rename(f.wf.path, final)
            log.info("archive: closed %s", final)
            try:
                st = os.stat(final)
                archive_index.append(
                    self.directory, [catalog.entry(f.seq, catalog.CLOSED, final, st.st_size, st.st_mtime_ns)]
                )
            except OSError as exc:  # the index is a cache: readers read the file directly
                log.error("archive index: %s not recorded (%s)", final, exc)
            else:
                self._indexed_since_digest += 1
                if self._indexed_since_digest >= archive_digest.WRITE_AFTER:
                    # readers that cannot write the directory start from the digest too
                    self._indexed_since_digest = 0
                    archive_index.refresh_digest(self.directory)
            pool().writer_closed(final)


def _convert(timeline: str, name: str, ftype: str, v: np.ndarray) -> np.ndarray:
    try:
        if ftype == "number":
            return v.astype(np.float64)
        if ftype == "bool":
            if v.dtype.kind not in "bui":
                raise TypeError(v.dtype)
            if v.dtype.kind != "b" and not np.isin(v, (0, 1)).all():
                raise TypeError("values other than 0/1")
            return v.astype(np.uint8)
        return v.astype(str)
    except (TypeError, ValueError) as exc:
        raise BadArgument(
            f"timeline {timeline!r}: field {name!r} of type {ftype} cannot take values of dtype {v.dtype} ({exc})"
        ) from None


__all__ = ["ArchiveWriter", "LEVELS"]
