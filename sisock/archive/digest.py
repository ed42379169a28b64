"""The index digest: the archive index's records as a few arrays, for a fast start.

The archive index (:mod:`.index`) is an append-only log of one JSON header
per immutable file.  Reading a year of hourly files from it costs a reader
about 0.1 s at every start, nearly all of it decoding 8,760 JSON headers.
The digest holds the same records column by column (numbers in little-endian
arrays, names and field lists once each), so that a starting reader decodes
a few arrays instead, then reads from the log only the records appended
since the digest was written.

Trust
-----
The digest is a cache of the log, as the log is a cache of the files.  It
names the log it was made from (inode, the byte length it covers, a CRC of
the last bytes it covers) and is used only when the log is that same file,
at least that long, with the same bytes there: the log only ever grows by
appends, and any rewrite of it (``sisock archive reindex``, dropping the
records of vanished files) is a new file, renamed into place.  Its own
bytes carry CRCs; a digest that is missing, damaged, of another format or
of another log is ignored (the reader decodes the log, as without one) and
written anew.  Every record still meets the directory listing (name, size,
modification time) and every table read from the log still checks its own
CRC, as records decoded from the log do.

Who writes it: a reader that decoded at least :data:`WRITE_AFTER` records
from the log at a refresh (a first start without a digest, or a digest far
behind), with a temporary file renamed into place.  Readers that cannot
write the directory simply go without.

Format
------
``<directory>/.sisock-index-digest``: ``MAGIC``, then ``<III`` (meta length,
blob length, meta CRC-32), a JSON ``meta`` object and the blob: the arrays
listed in ``meta["arrays"]`` (name -> dtype, length, byte offset), whose
CRC-32 is ``meta["blob_crc"]``.  Per record: ``seq``, ``state``, ``size``,
``mtime_ns``, the record's bytes in the log (``span0``, ``span1``) and the
end of its timelines (``rt_end``); per record timeline: its name, fields,
numeric fields, ``min_level``, ``count``, ``t_first``, ``t_last``, where
its tables start in the log (``offset``) and the end of its tables
(``tab_end``); per table: ``level``, ``rows``, ``cols``, ``crc``.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

DIGEST_NAME = ".sisock-index-digest"
MAGIC = b"SISOCKDG1\n"
HEAD = struct.Struct("<III")
#: Bytes of the log, ending where the digest ends, whose CRC the digest holds.
TAIL_BYTES = 65536
#: Records decoded from the log at one refresh after which a reader writes a digest.
WRITE_AFTER = 256

#: name -> dtype of each array, in blob order.
ARRAYS = {
    "seq": "<i8",
    "state": "<i4",
    "size": "<i8",
    "mtime_ns": "<i8",
    "span0": "<i8",
    "span1": "<i8",
    "rt_end": "<i8",
    "rt_timeline": "<i4",
    "rt_fields": "<i4",
    "rt_numeric": "<i4",
    "rt_min_level": "<i4",
    "rt_count": "<i8",
    "rt_t_first": "<f8",
    "rt_t_last": "<f8",
    "rt_offset": "<i8",
    "rt_tab_end": "<i8",
    "tab_level": "<i4",
    "tab_rows": "<i8",
    "tab_cols": "<i8",
    "tab_crc": "<i8",
}


def digest_path(directory: str) -> str:
    """Path of the digest of an archive directory."""
    return os.path.join(directory, DIGEST_NAME)


@dataclass
class Digest:
    """A decoded digest: the log it covers and its columns as Python lists.

    ``names`` (file names), ``timelines``, ``fields`` (field lists as the
    log stores them: JSON text), ``numerics`` and ``states`` are the
    distinct values the integer columns of ``columns`` refer to.
    """

    log_inode: int
    log_bytes: int
    names: list[str]
    timelines: list[str]
    fields: list[str]
    numerics: list[list[str]]
    states: list[str]
    columns: dict[str, list]

    def __len__(self) -> int:
        return len(self.names)


def tail_crc(fd: int, end: int) -> int:
    """CRC-32 of the log bytes just before ``end`` (at most :data:`TAIL_BYTES`)."""
    start = max(0, end - TAIL_BYTES)
    data = os.pread(fd, end - start, start)
    if len(data) != end - start:
        raise OSError("the archive index is shorter than its digest")
    return zlib.crc32(data)


def encode(records: list, log_inode: int, log_bytes: int, log_tail_crc: int) -> bytes:
    """The digest of ``records`` (:class:`~sisock.archive.index.IndexedFile`, log order).

    Parameters
    ----------
    records : list
        The records the log holds in ``[0, log_bytes)``.
    log_inode, log_bytes, log_tail_crc : int
        The log they come from (see :func:`tail_crc`).
    """
    from .h5io import specs_to_json

    distinct: dict[str, dict] = {"timelines": {}, "fields": {}, "numerics": {}, "states": {}}

    def ref(kind: str, value) -> int:
        key = tuple(value) if isinstance(value, list) else value
        table = distinct[kind]
        got = table.get(key)
        if got is None:
            got = table[key] = len(table)
        return got

    spec_text: dict[int, str] = {}  # id(specs dict) -> its JSON, once per shared dict
    cols: dict[str, list] = {k: [] for k in ARRAYS}
    names = []
    for r in records:
        names.append(r.name)
        cols["seq"].append(r.seq)
        cols["state"].append(ref("states", r.state))
        cols["size"].append(r.size)
        cols["mtime_ns"].append(r.mtime_ns)
        cols["span0"].append(r.span[0])
        cols["span1"].append(r.span[1])
        for tl, info in r.timelines.items():
            offset, tables = r.layout[tl]
            text = spec_text.get(id(info.fields))
            if text is None:
                text = spec_text[id(info.fields)] = specs_to_json(info.fields)
            cols["rt_timeline"].append(ref("timelines", tl))
            cols["rt_fields"].append(ref("fields", text))
            cols["rt_numeric"].append(ref("numerics", info.numeric))
            cols["rt_min_level"].append(info.min_level)
            cols["rt_count"].append(info.count)
            cols["rt_t_first"].append(info.t_first)
            cols["rt_t_last"].append(info.t_last)
            cols["rt_offset"].append(offset)
            for level, rows, ncols, crc in tables:
                cols["tab_level"].append(level)
                cols["tab_rows"].append(rows)
                cols["tab_cols"].append(ncols)
                cols["tab_crc"].append(crc)
            cols["rt_tab_end"].append(len(cols["tab_level"]))
        cols["rt_end"].append(len(cols["rt_timeline"]))
    blobs, layout, at = [], {}, 0
    for name, dtype in ARRAYS.items():
        data = np.asarray(cols[name], dtype=dtype).tobytes()
        layout[name] = [dtype, len(cols[name]), at]
        blobs.append(data)
        at += len(data)
    blob = b"".join(blobs)
    meta = json.dumps(
        {
            "log_inode": log_inode,
            "log_bytes": log_bytes,
            "log_tail_crc": log_tail_crc,
            "names": names,
            "timelines": list(distinct["timelines"]),
            "fields": list(distinct["fields"]),
            "numerics": [list(k) for k in distinct["numerics"]],
            "states": list(distinct["states"]),
            "arrays": layout,
            "blob_crc": zlib.crc32(blob),
        }
    ).encode()
    return MAGIC + HEAD.pack(len(meta), len(blob), zlib.crc32(meta)) + meta + blob


class DigestInvalid(ValueError):
    """The digest is damaged, of another format, or not of this log."""


def decode(data: bytes, log_fd: int, log_inode: int, log_size: int) -> Digest:
    """Decode a digest and check that it covers the open log ``log_fd``.

    Raises
    ------
    DigestInvalid
        If it is damaged, of another format, or of another log.
    """
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + HEAD.size:
        raise DigestInvalid("not a digest of this format")
    meta_len, blob_len, meta_crc = HEAD.unpack_from(data, len(MAGIC))
    at = len(MAGIC) + HEAD.size
    if len(data) != at + meta_len + blob_len:
        raise DigestInvalid("truncated")
    meta_bytes = data[at : at + meta_len]
    if zlib.crc32(meta_bytes) != meta_crc:
        raise DigestInvalid("its header fails its CRC")
    view = memoryview(data)[at + meta_len :]
    try:
        meta = json.loads(meta_bytes)
        if zlib.crc32(view) != meta["blob_crc"]:
            raise DigestInvalid("its arrays fail their CRC")
        if meta["log_inode"] != log_inode or not 0 < meta["log_bytes"] <= log_size:
            raise DigestInvalid("made from another index file")
        try:
            if tail_crc(log_fd, meta["log_bytes"]) != meta["log_tail_crc"]:
                raise DigestInvalid("made from another index file")
        except OSError as exc:
            raise DigestInvalid(str(exc)) from None
        columns = {}
        for name, dtype in ARRAYS.items():
            got_dtype, length, offset = meta["arrays"][name]
            if got_dtype != dtype:
                raise DigestInvalid(f"array {name} has dtype {got_dtype}")
            columns[name] = np.frombuffer(view, dtype, length, offset).tolist()
        digest = Digest(
            meta["log_inode"],
            meta["log_bytes"],
            meta["names"],
            meta["timelines"],
            meta["fields"],
            meta["numerics"],
            meta["states"],
            columns,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DigestInvalid):
            raise
        raise DigestInvalid(f"malformed ({exc})") from None
    _check_shape(digest)
    return digest


def _check_shape(d: Digest) -> None:
    """Raise :class:`DigestInvalid` unless the columns fit together."""
    c = d.columns
    n, k, t = len(d.names), len(c["rt_timeline"]), len(c["tab_level"])
    lengths_ok = all(len(c[x]) == n for x in ("seq", "state", "size", "mtime_ns", "span0", "span1", "rt_end"))
    lengths_ok = lengths_ok and all(len(c[x]) == k for x in ARRAYS if x.startswith("rt_") and x != "rt_end")
    lengths_ok = lengths_ok and all(len(c[x]) == t for x in ARRAYS if x.startswith("tab_"))
    if not lengths_ok:
        raise DigestInvalid("its columns differ in length")
    if n and (c["rt_end"][-1] != k or any(b < a for a, b in zip([0] + c["rt_end"], c["rt_end"]))):
        raise DigestInvalid("its record timelines do not add up")
    if k and (c["rt_tab_end"][-1] != t or any(b < a for a, b in zip([0] + c["rt_tab_end"], c["rt_tab_end"]))):
        raise DigestInvalid("its tables do not add up")
    for col, table in (
        ("state", d.states),
        ("rt_timeline", d.timelines),
        ("rt_fields", d.fields),
        ("rt_numeric", d.numerics),
    ):
        if c[col] and not (0 <= min(c[col]) and max(c[col]) < len(table)):
            raise DigestInvalid(f"column {col} refers past its table")


def read(directory: str, log_fd: int, log_inode: int, log_size: int) -> Digest | None:
    """The digest of ``directory`` if there is one and it covers this log, else None."""
    path = digest_path(directory)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.debug("archive index digest %s unreadable (%s)", path, exc)
        return None
    try:
        return decode(data, log_fd, log_inode, log_size)
    except DigestInvalid as exc:
        log.info("archive index digest %s ignored: %s", path, exc)
        return None


def write(directory: str, data: bytes) -> bool:
    """Put ``data`` in place as the directory's digest (atomically); False if we cannot."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=DIGEST_NAME + ".", suffix=".tmp", dir=directory)
    except OSError as exc:  # a read-only archive: go without
        log.debug("archive index digest not written in %s (%s)", directory, exc)
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, digest_path(directory))
        return True
    except OSError as exc:
        log.debug("archive index digest not written in %s (%s)", directory, exc)
        try:
            os.remove(tmp)
        except OSError:
            pass
        return False


def remove(directory: str) -> None:
    """Delete the directory's digest, if any."""
    try:
        os.remove(digest_path(directory))
    except FileNotFoundError:
        pass
