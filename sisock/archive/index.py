"""The archive index: what readers need about every immutable file, in one file.

Without it a reader must open every file of the directory to learn its
timelines, spans and fields (3 ms per file, half a minute for a year of
hourly files).  The index holds, per immutable file (cleanly closed or
crashed), everything :mod:`sisock.archive.h5io` ``describe`` reads: the
field specs of each timeline, sample count, first and last time, and, for
closed files, the summary tables of the coarse levels (``FROM_LEVEL`` and
up: 64 s buckets and wider, about 6 kB per hour of a 1 Hz field), so that
a long downsampled query reads no archive file except at its edges.

Why an append-only log rather than a file rewritten at each close: the
rewrite would cost the whole index per file closed (a year of hourly files
would write ~200 GB of index over its life); an append costs one record,
and a torn append is detected and cut off.  A full rewrite (temporary file
renamed into place) happens only in :func:`rebuild` and when records of
vanished files are dropped.

Format
------
One file, ``<directory>/.sisock-index``: a 10-byte magic then records, one
per file, each ``b"REC2"``, header length, blob length and the header's
CRC-32 (little-endian uint32) followed by a JSON header and the tables as
float64 bytes (each table's CRC-32 is in the header).  A reader loads the
headers only (a few hundred bytes per file) and checks a table's CRC when
it reads the table.  The writer appends a record when it closes a file
(appending never touches earlier records; a record torn by a crash is
incomplete or fails its CRC, and the next writer cuts it off before
appending, after checking every table).  :func:`rebuild` (``sisock archive
reindex DIR``) writes a new index from the files and renames it into
place.

Trust
-----
The index is a cache of the files, never trusted over them: readers match
each record against the directory listing by name, size and modification
time; a file missing from the index (or not matching it) is read directly,
a record whose file is gone is ignored, an open file is always read
directly.  Losing the index costs speed, not data.  ``sisock archive
reindex`` may run beside a live writer: a record appended during the
rebuild may be lost, which only means that file is read directly until the
writer's next start records it again.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
import tempfile
import zlib
from dataclasses import dataclass

import numpy as np

from . import catalog, digest
from .datafile import TimelineInfo
from .h5io import describe, specs_from_json, specs_to_json
from sisock.core.protocol import FieldSpec
from .summary import LEVELS

log = logging.getLogger(__name__)

INDEX_NAME = ".sisock-index"
MAGIC = b"SISOCKIX2\n"
RECORD = struct.Struct("<4sIII")
RECORD_MAGIC = b"REC2"
#: Summary levels (index in LEVELS) whose tables the index keeps: 64 s
#: buckets and wider, which answer every query with ``min_stride >= 1024 s``
#: (a month or more at 2000 points) without opening a file.
FROM_LEVEL = 1
#: Tables at most this far apart are read together (one system call) ...
MAX_GAP = 4096
#: ... in reads of at most this many bytes.
MAX_READ = 8 * 2**20
#: Bytes read at once when a record header is expected (most headers are shorter).
HEADER_GUESS = 2048


class IndexSource:
    """One generation of the index file, open for reading tables.

    Records point at the generation they were read from, so a rebuilt index
    renamed into place never mixes offsets; the file closes when no record
    refers to it any more.
    """

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.inode = os.fstat(self.fd).st_ino

    def pread(self, n: int, offset: int) -> bytes:
        """``n`` bytes at ``offset``."""
        return os.pread(self.fd, n, offset)

    def __del__(self, _close=os.close) -> None:  # bound now: at interpreter exit ``os`` may be gone
        fd, self.fd = getattr(self, "fd", None), None
        if fd is not None:
            _close(fd)


@dataclass(slots=True)
class IndexedFile:
    """The record of one file.

    ``timelines`` are the reader's own :class:`~sisock.archive.datafile.TimelineInfo`
    objects (shared, not copied); ``layout`` holds, per timeline, where its
    tables start in the index file and ``[level, rows, columns, crc]`` of
    each, decoded into positions only when a table is read.
    """

    name: str
    seq: int
    state: str
    size: int
    mtime_ns: int
    timelines: dict[str, TimelineInfo]
    layout: dict[str, tuple[int, list[list[int]]]]
    source: IndexSource | None = None
    span: tuple[int, int] = (0, 0)  # bytes of the record in the index file

    def matches(self, entry: catalog.Entry) -> bool:
        """True if the listed file is the one this record describes."""
        return (
            entry.name == self.name
            and entry.size == self.size
            and entry.mtime_ns == self.mtime_ns
            and entry.state != catalog.OPEN
        )

    def part(self, timeline: str, level: int) -> tuple[IndexSource, int, int, int, int] | None:
        """``(source, offset, rows, columns, crc)`` of a stored table, or None."""
        offset, tables = self.layout[timeline]
        for lvl, rows, cols, crc in tables:
            if lvl == level:
                return self.source, offset, rows, cols, crc
            offset += rows * cols * 8
        return None

    def parts(self) -> list[tuple[IndexSource, int, int, int, int]]:
        """Every stored table."""
        out = []
        for offset, tables in self.layout.values():
            for _, rows, cols, crc in tables:
                out.append((self.source, offset, rows, cols, crc))
                offset += rows * cols * 8
        return out

    def table(self, timeline: str, level: int) -> np.ndarray | None:
        """A stored table, or None if not stored or damaged (then read the file)."""
        part = self.part(timeline, level)
        if part is None:
            return None
        try:
            return read_tables([part])[0]
        except IndexDamaged as exc:
            log.warning("archive index: %s (%s); reading the file instead", exc, self.name)
            return None


def index_path(directory: str) -> str:
    """Path of the index file of an archive directory."""
    return os.path.join(directory, INDEX_NAME)


# --------------------------------------------------------------------- records


def encode_record(entry: catalog.Entry) -> bytes:
    """The index record of one immutable file (opens it once)."""
    complete = entry.state == catalog.CLOSED
    info = describe(entry.path, FROM_LEVEL if complete else len(LEVELS))
    blobs: list[bytes] = []
    timelines = {}
    for tl, d in info.items():
        tables = []
        for level, table in sorted(d["tables"].items()):
            data = np.ascontiguousarray(table, dtype="<f8").tobytes()
            tables.append([level, int(table.shape[0]), int(table.shape[1]), zlib.crc32(data)])
            blobs.append(data)
        timelines[tl] = {
            "fields": specs_to_json(d["fields"]),
            "numeric": d["numeric"],
            "min_level": d["min_level"],
            "count": d["count"],
            "t_first": d["t_first"],
            "t_last": d["t_last"],
            "tables": tables,
        }
    header = json.dumps(
        {
            "name": entry.name,
            "seq": entry.seq,
            "state": entry.state,
            "size": entry.size,
            "mtime_ns": entry.mtime_ns,
            "timelines": timelines,
        }
    ).encode()
    blob = b"".join(blobs)
    return RECORD.pack(RECORD_MAGIC, len(header), len(blob), zlib.crc32(header)) + header + blob


class _SpecCache:
    """Parse each distinct field list once (files of a timeline mostly share one)."""

    def __init__(self) -> None:
        self._seen: dict[str, dict[str, FieldSpec]] = {}
        self._lists: dict[tuple[str, ...], list[str]] = {}

    def __call__(self, fields: str) -> dict[str, FieldSpec]:
        specs = self._seen.get(fields)
        if specs is None:
            specs = self._seen[fields] = specs_from_json(fields)
        return specs

    def shared(self, value: list[str]) -> list[str]:
        """One list object for equal lists of names (e.g. the numeric fields)."""
        key = tuple(value)
        got = self._lists.get(key)
        if got is None:
            got = self._lists[key] = value
        return got


def parse_header(
    h: dict, offset: int, span: tuple[int, int], source: IndexSource | None, specs: _SpecCache
) -> IndexedFile:
    """The record of decoded JSON header ``h`` whose tables start at ``offset``."""
    timelines = {}
    layout = {}
    for tl, d in h["timelines"].items():
        tl = sys.intern(tl)
        timelines[tl] = TimelineInfo(
            specs(d["fields"]),
            specs.shared(d["numeric"]),
            d["min_level"],
            d["count"],
            float(d["t_first"]),
            float(d["t_last"]),
        )
        layout[tl] = (offset, d["tables"])
        offset += sum(rows * cols for _, rows, cols, _ in d["tables"]) * 8
    return IndexedFile(
        h["name"], h["seq"], sys.intern(h["state"]), h["size"], h["mtime_ns"], timelines, layout, source, span
    )


def records_from_digest(d: digest.Digest, source: IndexSource, specs: _SpecCache) -> list[IndexedFile]:
    """The records a digest holds, as :func:`read_records` would decode them from the log."""
    c = d.columns
    tl_names = [sys.intern(t) for t in d.timelines]
    field_specs = [specs(text) for text in d.fields]
    numerics = [specs.shared(list(n)) for n in d.numerics]
    states = [sys.intern(s) for s in d.states]
    tables = list(zip(c["tab_level"], c["tab_rows"], c["tab_cols"], c["tab_crc"]))
    rt_tl, rt_fields, rt_numeric, rt_min = c["rt_timeline"], c["rt_fields"], c["rt_numeric"], c["rt_min_level"]
    rt_count, rt_first, rt_last, rt_offset, rt_tab_end = (
        c["rt_count"],
        c["rt_t_first"],
        c["rt_t_last"],
        c["rt_offset"],
        c["rt_tab_end"],
    )
    seq, state, size, mtime_ns, span0, span1, rt_end = (
        c["seq"],
        c["state"],
        c["size"],
        c["mtime_ns"],
        c["span0"],
        c["span1"],
        c["rt_end"],
    )
    out = []
    k = t = 0
    for i, name in enumerate(d.names):
        timelines = {}
        layout = {}
        while k < rt_end[i]:
            tl = tl_names[rt_tl[k]]
            timelines[tl] = TimelineInfo(
                field_specs[rt_fields[k]], numerics[rt_numeric[k]], rt_min[k], rt_count[k], rt_first[k], rt_last[k]
            )
            layout[tl] = (rt_offset[k], tables[t : rt_tab_end[k]])
            t = rt_tab_end[k]
            k += 1
        out.append(
            IndexedFile(
                name, seq[i], states[state[i]], size[i], mtime_ns[i], timelines, layout, source, (span0[i], span1[i])
            )
        )
    return out


def read_records(source: IndexSource, pos: int, size: int, specs: _SpecCache) -> tuple[list[IndexedFile], int]:
    """Records from byte ``pos`` up to ``size``, reading headers only.

    Returns the records and the position after the last whole, valid one;
    reading stops at the first torn or corrupt record.  The JSON headers are
    decoded together (one call for the whole index).
    """
    headers: list[bytes] = []
    places: list[tuple[int, int, int]] = []  # tables offset, record start, record end
    while pos + RECORD.size <= size:
        head = source.pread(RECORD.size + HEADER_GUESS, pos)
        if len(head) < RECORD.size:
            break
        magic, header_len, blob_len, crc = RECORD.unpack_from(head)
        body = pos + RECORD.size
        end = body + header_len + blob_len
        if magic != RECORD_MAGIC or end > size:
            break
        header = head[RECORD.size : RECORD.size + header_len]
        if len(header) < header_len:
            header = source.pread(header_len, body)
        if len(header) != header_len or zlib.crc32(header) != crc:
            break
        headers.append(header)
        places.append((body + header_len, pos, end))
        pos = end
    try:
        decoded = json.loads(b"[" + b",".join(headers) + b"]")
        out = [parse_header(h, offset, (start, end), source, specs) for h, (offset, start, end) in zip(decoded, places)]
    except (ValueError, KeyError, TypeError):  # a header with a valid CRC but bad content
        out = []
        for header, (offset, start, end) in zip(headers, places):
            try:
                out.append(parse_header(json.loads(header), offset, (start, end), source, specs))
            except (ValueError, KeyError, TypeError):
                return out, start
    return out, pos


# --------------------------------------------------------------------- reading


class IndexReader:
    """Follow an archive's index file: load it once, then only what was appended.

    Not thread-safe: the owner refreshes it under its own lock.  Tables can
    be read from any thread (:func:`read_tables`).

    Parameters
    ----------
    directory : str
        The archive directory.
    """

    def __init__(self, directory: str) -> None:
        self.path = index_path(directory)
        self.source: IndexSource | None = None
        self.parsed = 0
        self._specs = _SpecCache()
        #: File name -> record, of every valid record read so far.
        self.records: dict[str, IndexedFile] = {}
        #: True once this reader wrote the directory's digest (see :mod:`.digest`).
        self.wrote_digest = False

    def refresh(self) -> bool:
        """Read what changed since the last call; return True if anything did."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            changed = bool(self.records)
            self._reset()
            return changed
        changed = False
        if self.source is None or st.st_ino != self.source.inode or st.st_size < self.parsed:
            changed = bool(self.records)
            self._reset()
            try:
                self.source = IndexSource(self.path)
            except FileNotFoundError:
                return changed
        size = os.fstat(self.source.fd).st_size
        if size == self.parsed:
            return changed
        pos = self.parsed
        if pos == 0:
            if self.source.pread(len(MAGIC), 0) != MAGIC:
                log.warning("archive index %s is not an index; ignored", self.path)
                self.parsed = size
                return changed
            pos = len(MAGIC)
            got = digest.read(os.path.dirname(self.path), self.source.fd, self.source.inode, size)
            if got is not None:
                for r in records_from_digest(got, self.source, self._specs):
                    self.records[r.name] = r
                pos = got.log_bytes
                changed = changed or bool(self.records)
        records, self.parsed = read_records(self.source, pos, size, self._specs)
        for r in records:
            self.records[r.name] = r
        if len(records) >= digest.WRITE_AFTER:
            self.wrote_digest = self.write_digest()
        return changed or bool(records)

    def write_digest(self) -> bool:
        """Write the digest of the records read so far (see :mod:`.digest`); False if not written."""
        if self.source is None or self.parsed <= len(MAGIC):
            return False
        try:
            data = digest.encode(
                list(self.records.values()),
                self.source.inode,
                self.parsed,
                digest.tail_crc(self.source.fd, self.parsed),
            )
        except OSError as exc:
            log.debug("archive index digest not written (%s)", exc)
            return False
        return digest.write(os.path.dirname(self.path), data)

    def _reset(self) -> None:
        self.source, self.parsed, self.records = None, 0, {}

    def close(self) -> None:
        """Forget the records and close the index file (when no record refers to it)."""
        self._reset()


def refresh_digest(directory: str) -> bool:
    """Bring the directory's index digest up to date if it is :data:`digest.WRITE_AFTER`
    records or more behind the index; True if a digest was written."""
    reader = IndexReader(directory)
    try:
        reader.refresh()
        return reader.wrote_digest
    except OSError as exc:  # a cache: readers go without
        log.debug("archive index digest of %s not refreshed (%s)", directory, exc)
        return False
    finally:
        reader.close()


class IndexDamaged(OSError):
    """A table of the index does not match its CRC (readers then read the file)."""


def read_tables(parts: list[tuple[IndexSource, int, int, int, int]]) -> list[np.ndarray]:
    """Tables stored at ``(source, offset, rows, columns, crc)``; neighbours in one read.

    Raises
    ------
    IndexDamaged
        If a table is short or fails its CRC.
    """
    out: list[np.ndarray] = []
    i = 0
    while i < len(parts):
        source = parts[i][0]
        j, end = i, parts[i][1] + parts[i][2] * parts[i][3] * 8
        while (
            j + 1 < len(parts)
            and parts[j + 1][0] is source
            and end <= parts[j + 1][1] <= end + MAX_GAP  # the gap: other levels, a header
            and parts[j + 1][1] - parts[i][1] < MAX_READ
        ):
            j += 1
            end = parts[j][1] + parts[j][2] * parts[j][3] * 8
        base = parts[i][1]
        buffer = source.pread(end - base, base)
        if len(buffer) != end - base:
            raise IndexDamaged("the archive index is shorter than its records")
        view = memoryview(buffer)
        for _, offset, rows, cols, crc in parts[i : j + 1]:
            a, b = offset - base, offset - base + rows * cols * 8
            if zlib.crc32(view[a:b]) != crc:
                raise IndexDamaged("a table of the archive index fails its CRC")
            out.append(np.frombuffer(buffer, "<f8", rows * cols, a).reshape(rows, cols))
        i = j + 1
    return out


def intact(record: IndexedFile) -> bool:
    """True if every table of a record matches its CRC."""
    parts = record.parts()
    try:
        read_tables(parts)
    except IndexDamaged:
        return False
    return True


# --------------------------------------------------------------------- writing


def _is_indexable(entry: catalog.Entry) -> bool:
    return entry.state != catalog.OPEN


def append(directory: str, entries: list[catalog.Entry]) -> int:
    """Append records for immutable files (the writer calls this as files close).

    Returns the number of records written.  A file that cannot be read is
    skipped (readers read it directly, or skip it, as without an index).
    """
    records = []
    for e in entries:
        if not _is_indexable(e):
            continue
        try:
            records.append(encode_record(e))
        except (OSError, KeyError) as exc:
            log.error("archive index: cannot describe %s (%s)", e.path, exc)
    if not records:
        return 0
    path = index_path(directory)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size == 0:
            os.write(fd, MAGIC)
        os.write(fd, b"".join(records))
    finally:
        os.close(fd)
    return len(records)


def sync(directory: str) -> tuple[int, int]:
    """Bring the index up to date with the directory (writer start-up).

    Cuts a torn last record off, appends records for immutable files that
    have none (crashed files, files of an older writer), and rewrites the
    index when it holds records of files that are gone.  Call it only while
    holding the directory's writer lock.

    Returns
    -------
    (int, int)
        Records appended and records dropped.
    """
    listed = {e.name: e for e in catalog.scan(directory).values()}
    path = index_path(directory)
    reader = IndexReader(directory)
    reader.refresh()
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        size = 0
    if size and (reader.source is None or reader.source.pread(len(MAGIC), 0) != MAGIC):
        log.warning("archive index %s is not an index; rebuilding it", path)
        reader.close()
        return rebuild(directory), 0
    if size and reader.parsed < size:
        log.warning("archive index %s: cutting a torn record off (%d bytes)", path, size - reader.parsed)
        os.truncate(path, reader.parsed)
    kept = {n: r for n, r in reader.records.items() if n in listed and r.matches(listed[n]) and intact(r)}
    dropped = len(reader.records) - len(kept)
    if dropped:
        _rewrite(directory, reader, sorted(kept.values(), key=lambda r: r.seq))
    reader.close()
    missing = [e for n, e in listed.items() if n not in kept and _is_indexable(e)]
    added = append(directory, sorted(missing, key=lambda e: e.seq))
    if added or dropped:
        log.info("archive index %s: %d record(s) added, %d dropped", path, added, dropped)
    return added, dropped


def _rewrite(directory: str, reader: IndexReader, records: list[IndexedFile]) -> None:
    """Write the index anew from kept records (copied byte for byte), atomically."""

    def chunks():
        yield MAGIC
        for r in records:
            a, b = r.span
            yield reader.source.pread(b - a, a)

    _replace(directory, chunks())


def rebuild(directory: str) -> int:
    """Write the index from the files themselves (``sisock archive reindex``).

    Records are streamed to a temporary file renamed into place at the end.
    Returns the number of records written.
    """
    directory = os.fspath(directory)
    written = 0

    def chunks():
        nonlocal written
        yield MAGIC
        for e in catalog.scan(directory).values():
            if not _is_indexable(e):
                continue
            try:
                record = encode_record(e)
            except (OSError, KeyError) as exc:
                log.error("archive index: cannot describe %s (%s)", e.path, exc)
                continue
            written += 1
            yield record

    _replace(directory, chunks())
    return written


def _replace(directory: str, chunks) -> None:
    """Write ``chunks`` (bytes) to a temporary file and rename it over the index."""
    fd, tmp = tempfile.mkstemp(prefix=INDEX_NAME + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, index_path(directory))
        digest.remove(directory)  # it describes the file just replaced
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
