"""HDF5 layout of one archive file (the only module that imports h5py).

Layout (format ``sisock-archive`` version 1)::

    /                       attrs: format, version, seq, created (UNIX s),
                            levels (exponents), last_times (JSON: the last
                            sample time of every timeline known when the file
                            was created, so a restarted writer need only read
                            the newest file)
    /<timeline>/            attrs: fields (JSON list of [name, type, units,
                            description]), numeric (JSON list of the
                            number/bool fields in summary column order),
                            min_level (index of the finest summary level
                            kept: levels whose buckets would hold fewer than
                            4 samples cost more than the raw data and are
                            not stored)
    /<timeline>/t           float64 (N,), UNIX seconds, strictly increasing
    /<timeline>/f/<field>   float64 (number), uint8 0/1 (bool) or
                            S64 UTF-8 (string, truncated to 64 bytes;
                            always Blosc-LZ4 compressed: states repeat)
    /<timeline>/s<p>        float64 (R, 2 + 7 F) summary level 2**p s
                            (see :mod:`sisock.archive.summary`)

Every object is created before SWMR mode is switched on (HDF5 cannot add
objects or attributes under SWMR); afterwards datasets only grow.  Readers
always open with ``swmr=True`` so that files of a live or crashed writer
open as well as closed ones.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from ..downsample import BucketStats
from ..protocol import FieldSpec
from .summary import LEVELS, WIDTHS, split_table, table_width

log = logging.getLogger(__name__)

FORMAT = "sisock-archive"
VERSION = 1
STRING_BYTES = 64

_plugins_loaded = False
_USE = itertools.count(1)


def _load_plugins() -> None:
    """Register the Blosc filter (hdf5plugin) on first use."""
    global _plugins_loaded
    if not _plugins_loaded:
        import hdf5plugin  # noqa: F401  (registers filters)

        _plugins_loaded = True


def compression_options(compression: str | None) -> dict[str, Any]:
    """h5py ``create_dataset`` keywords for a compression name.

    Parameters
    ----------
    compression : {None, "none", "lz4", "gzip"}
        ``lz4`` is Blosc-LZ4 with byte shuffle (hdf5plugin).
    """
    if compression in (None, "none"):
        return {}
    if compression == "lz4":
        _load_plugins()
        import hdf5plugin

        return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    raise ValueError(f"compression must be None, 'lz4' or 'gzip', got {compression!r}")


def field_dtype(ftype: str) -> np.dtype:
    """Storage dtype of a field type."""
    return {"number": np.dtype("f8"), "bool": np.dtype("u1"), "string": np.dtype(f"S{STRING_BYTES}")}[ftype]


def encode_strings(values: np.ndarray) -> np.ndarray:
    """UTF-8 encode to fixed-width bytes, truncating at a character boundary."""
    out = np.empty(len(values), dtype=f"S{STRING_BYTES}")
    for i, s in enumerate(values):
        b = str(s).encode("utf-8")
        if len(b) > STRING_BYTES:
            b = b[:STRING_BYTES].decode("utf-8", "ignore").encode("utf-8")
            log.warning("string value truncated to %d bytes", STRING_BYTES)
        out[i] = b
    return out


def decode_strings(values: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_strings` (returns a str array)."""
    if values.size == 0:
        return np.zeros(0, dtype=str)
    return np.char.decode(values, "utf-8")


def specs_to_json(fields: dict[str, FieldSpec]) -> str:
    """Serialise field specs (ordered)."""
    return json.dumps([[k, f.type, f.units, f.description] for k, f in fields.items()])


def specs_from_json(text: str) -> dict[str, FieldSpec]:
    """Inverse of :func:`specs_to_json`."""
    return {k: FieldSpec(t, u, d) for k, t, u, d in json.loads(text)}


def numeric_fields(fields: dict[str, FieldSpec]) -> list[str]:
    """Fields with summary columns (number and bool), in order."""
    return [k for k, f in fields.items() if f.type in ("number", "bool")]


# --------------------------------------------------------------------- writing


class WritableFile:
    """An archive file being written (SWMR writer).

    Parameters
    ----------
    path : str
        Where to create the file (must not exist).
    seq : int
        Sequence number of the file in its directory.
    timelines : dict
        Timeline name to its ordered field specs; every group is created now.
    last_times : dict
        Last stored time of every known timeline (carried forward).
    compression : str or None
        See :func:`compression_options` (raw data only; summaries are small).
    chunk_rows : int or dict
        Chunk length of raw datasets (or per timeline).
    level_chunks : list of int
        Chunk rows of each summary level.
    min_levels : dict, optional
        Per timeline, index of the finest summary level to store (default 0).
    """

    def __init__(
        self,
        path: str,
        seq: int,
        timelines: dict[str, dict[str, FieldSpec]],
        last_times: dict[str, float],
        *,
        compression: str | None = None,
        chunk_rows: int | dict[str, int] = 4096,
        level_chunks: list[int] | None = None,
        min_levels: dict[str, int] | None = None,
    ) -> None:
        self.path = path
        opts = compression_options(compression)
        str_opts = compression_options("lz4")
        min_levels = min_levels or {}
        level_chunks = level_chunks or [64] * len(LEVELS)
        f = h5py.File(path, "w-", libver="latest")
        try:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            f.attrs["seq"] = seq
            f.attrs["created"] = time.time()
            f.attrs["levels"] = np.array(LEVELS)
            f.attrs["last_times"] = json.dumps(last_times)
            self._ds: dict[str, dict[str, h5py.Dataset]] = {}
            for tl, specs in timelines.items():
                g = f.create_group(tl)
                g.attrs["fields"] = specs_to_json(specs)
                num = numeric_fields(specs)
                g.attrs["numeric"] = json.dumps(num)
                rows = chunk_rows.get(tl, 4096) if isinstance(chunk_rows, dict) else chunk_rows
                d = {"t": g.create_dataset("t", (0,), "f8", maxshape=(None,), chunks=(rows,), **opts)}
                fg = g.create_group("f")
                for name, spec in specs.items():
                    d["f/" + name] = fg.create_dataset(
                        name, (0,), field_dtype(spec.type), maxshape=(None,), chunks=(rows,),
                        **(str_opts if spec.type == "string" else opts)
                    )
                width = table_width(len(num))
                lo = int(min_levels.get(tl, 0))
                g.attrs["min_level"] = lo
                for p, c in list(zip(LEVELS, level_chunks))[lo:]:
                    d[f"s{p}"] = g.create_dataset(
                        f"s{p}", (0, width), "f8", maxshape=(None, width), chunks=(c, width)
                    )
                self._ds[tl] = d
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        self._f = f

    def append_raw(self, timeline: str, t: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Append samples (values already in storage dtype, all fields)."""
        d = self._ds[timeline]
        _extend(d["t"], t)
        for name, v in values.items():
            _extend(d["f/" + name], v)

    def append_summary(self, timeline: str, tables: list[np.ndarray]) -> None:
        """Append completed rows of every summary level."""
        d = self._ds[timeline]
        for p, rows in zip(LEVELS, tables):
            if len(rows) and f"s{p}" in d:
                _extend(d[f"s{p}"], rows)

    def flush(self) -> None:
        """Make everything appended so far visible to SWMR readers and durable."""
        self._f.flush()

    def size(self) -> int:
        """Current file size in bytes."""
        return int(self._f.id.get_filesize())

    def close(self) -> None:
        """Flush and close."""
        if self._f.id.valid:
            self._f.flush()
            self._f.close()


def _extend(ds: h5py.Dataset, rows: np.ndarray) -> None:
    n = ds.shape[0]
    ds.resize(n + len(rows), axis=0)
    ds[n:] = rows


# --------------------------------------------------------------------- reading


@dataclass
class TimelineInfo:
    """What a reader knows about one timeline in one file."""

    fields: dict[str, FieldSpec]
    numeric: list[str]
    min_level: int = 0
    count: int = 0
    t_first: float = np.nan
    t_last: float = np.nan
    levels: dict[int, tuple[np.ndarray, BucketStats]] = field(default_factory=dict)


class ReadableFile:
    """Read-only SWMR view of one archive file.

    ``complete`` files (cleanly closed) never change, so their metadata and
    summary tables are cached; otherwise :meth:`refresh` picks up growth.

    Parameters
    ----------
    path : str
        File path.
    complete : bool
        True if the file was closed cleanly (immutable, full summaries).
    immutable : bool
        True if nobody writes the file any more (closed or crashed): its
        metadata and tables are cached.
    """

    #: Number of ``h5py.File`` opens performed by all instances (for tests).
    opens = 0

    def __init__(self, path: str, complete: bool, immutable: bool | None = None) -> None:
        self.path = path
        self.complete = complete
        self.immutable = complete if immutable is None else immutable
        self.data_reads = 0  # reads of raw data or summary tables (for tests)
        self.seq = -1
        self.touched: set[int] | None = None  # a reader's set of files read
        self.last_used = 0
        self._f: h5py.File | None = None
        self.timelines: dict[str, TimelineInfo] = {}
        self.last_times: dict[str, float] = {}
        self._loaded = False

    def _mark(self) -> None:
        self.data_reads += 1
        if self.touched is not None:
            self.touched.add(self.seq)

    # -- handle management
    def _file(self) -> h5py.File:
        self.last_used = next(_USE)
        if self._f is None or not self._f.id.valid:
            _load_plugins()
            self._f = h5py.File(self.path, "r", libver="latest", swmr=True)
            ReadableFile.opens += 1
        return self._f

    def release(self) -> None:
        """Close the HDF5 handle (cached metadata stays)."""
        if self._f is not None and self._f.id.valid:
            self._f.close()
        self._f = None

    @property
    def is_open(self) -> bool:
        """True if an HDF5 handle is held."""
        return self._f is not None and self._f.id.valid

    def rename(self, path: str, complete: bool, immutable: bool) -> None:
        """The file was renamed (closed by its writer, or marked crashed)."""
        self.release()
        self.path = path
        if (complete, immutable) != (self.complete, self.immutable):
            self.complete, self.immutable = complete, immutable
            self._loaded = False
            self.timelines = {}

    # -- metadata
    #: Summary tables of complete files with at most this many rows are read
    #: together with the metadata (one open per file for a long query).
    PREFETCH_ROWS = 64

    def load(self, release: bool = False) -> None:
        """Read (or, for growing files, refresh) per-timeline metadata.

        Parameters
        ----------
        release : bool
            Close the HDF5 handle afterwards (when loading many files).
        """
        if self._loaded and self.immutable:
            return
        was_open = self.is_open
        f = self._file()
        if not self._loaded:
            self.last_times = json.loads(f.attrs.get("last_times", "{}"))
            for tl, g in f.items():
                specs = specs_from_json(g.attrs["fields"])
                self.timelines[tl] = TimelineInfo(specs, json.loads(g.attrs["numeric"]),
                                                  int(g.attrs.get("min_level", 0)))
        for tl, info in self.timelines.items():
            ds = f[tl]["t"]
            if not self.immutable:
                ds.refresh()
                info.levels = {}
            n = ds.shape[0]
            info.count = n
            if n:
                info.t_first, info.t_last = float(ds[0]), float(ds[n - 1])
            if self.complete and not self._loaded:
                g = f[tl]
                for i in range(info.min_level, len(LEVELS)):
                    ds = g[f"s{LEVELS[i]}"]
                    if ds.shape[0] <= self.PREFETCH_ROWS:
                        info.levels[i] = split_table(ds[()])
        self._loaded = True
        if release and not was_open:
            self.release()

    def level(self, timeline: str, i: int, cache: bool = True) -> tuple[np.ndarray, BucketStats]:
        """Bucket indices and statistics of level ``i``.

        Cached (immutable files, or until the next :meth:`load` of a growing
        file) unless ``cache`` is False.
        """
        info = self.timelines[timeline]
        if i in info.levels:
            return info.levels[i]
        if i < info.min_level:  # not stored for this timeline
            return np.zeros(0, np.int64), BucketStats.empty(len(info.numeric))
        ds = self._file()[timeline][f"s{LEVELS[i]}"]
        if not self.immutable:
            ds.refresh()
        self._mark()
        out = split_table(ds[()])
        if cache:
            info.levels[i] = out
        return out

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

    def read_t(self, timeline: str, i0: int, i1: int) -> np.ndarray:
        """Times ``[i0, i1)``."""
        if i1 <= i0:
            return np.zeros(0)
        self._mark()
        return self._file()[timeline]["t"][i0:i1]

    def read_field(self, timeline: str, name: str, i0: int, i1: int) -> np.ndarray:
        """Values ``[i0, i1)`` of a field in the API dtype (float64, bool, str)."""
        spec = self.timelines[timeline].fields[name]
        if i1 <= i0:
            raw = np.zeros(0, field_dtype(spec.type))
        else:
            ds = self._file()[timeline]["f"][name]
            if not self.immutable:
                ds.refresh()
            self._mark()
            raw = ds[i0:i1]
        if spec.type == "bool":
            return raw.astype(bool)
        if spec.type == "string":
            return decode_strings(raw)
        return raw.astype(np.float64, copy=False)

    def index(self, timeline: str, x: float) -> int:
        """Number of samples with ``t < x`` (binary search guided by level 0)."""
        info = self.timelines[timeline]
        n = info.count
        if n == 0 or not x > info.t_first:
            return 0
        if x > info.t_last:
            return n
        k, st = self.level(timeline, info.min_level)
        cum = np.concatenate(([0], np.cumsum(st.n)))
        kx = int(np.floor(x / WIDTHS[info.min_level]))  # exact: the width is a power of two
        j = int(np.searchsorted(k, kx))
        base = min(int(cum[j]), n)
        if j < len(k):
            top = min(int(cum[j + 1]) if k[j] == kx else base, n)
        else:
            top = n
        if top <= base:
            return base
        return base + int(np.searchsorted(self.read_t(timeline, base, top), x, side="left"))


def read_root_attrs(path: str) -> dict[str, Any]:
    """Root attributes of a file (used by a restarting writer)."""
    _load_plugins()
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        out = {k: f.attrs[k] for k in f.attrs}
        out["_t_last"] = {}
        for tl, g in f.items():
            n = g["t"].shape[0]
            if n:
                out["_t_last"][tl] = float(g["t"][n - 1])
    return out

