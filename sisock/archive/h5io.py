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
always open with ``swmr=True`` (:func:`open_readonly`) so that files of a
live or crashed writer open as well as closed ones.  The read functions
below take an open handle; which handles are open is the business of
:mod:`sisock.archive.handles`: every read of an archive file in a process
goes through its one pool, because HDF5 breaks when a dataset is refreshed
while a second handle of the same process has the file open.

A writer creates a file under a temporary name (:func:`creating_path`,
not an archive name, so readers never list it) and gives it its
``.open.h5`` name only once SWMR mode is on: a reader never meets a file
it cannot open yet.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from sisock.core.protocol import FieldSpec
from .handles import HandlePool
from .summary import LEVELS, table_width

if TYPE_CHECKING:
    import h5py

log = logging.getLogger(__name__)


def _h5py():
    """The h5py module, imported on first use.

    A node whose first queries the archive index answers (a whole year
    downsampled opens no file) starts without it: 25-35 ms of a restart.
    """
    import h5py

    return h5py


FORMAT = "sisock-archive"
VERSION = 1
STRING_BYTES = 64

_plugins_loaded = False


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
    lock : threading.RLock, optional
        The lock the caller holds while it appends and flushes; readers of
        this process hold it too while they read the file (:mod:`.handles`).
        The caller calls ``pool().writer_closed(path)`` once the file is closed.
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
        lock: Any = None,
    ) -> None:
        self.path = path
        opts = compression_options(compression)
        str_opts = compression_options("lz4")
        min_levels = min_levels or {}
        level_chunks = level_chunks or [64] * len(LEVELS)
        creating = creating_path(path)
        if os.path.exists(path):
            raise FileExistsError(path)
        f = _h5py().File(creating, "w", libver="latest")
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
                        name,
                        (0,),
                        field_dtype(spec.type),
                        maxshape=(None,),
                        chunks=(rows,),
                        **(str_opts if spec.type == "string" else opts),
                    )
                width = table_width(len(num))
                lo = int(min_levels.get(tl, 0))
                g.attrs["min_level"] = lo
                for p, c in list(zip(LEVELS, level_chunks))[lo:]:
                    d[f"s{p}"] = g.create_dataset(f"s{p}", (0, width), "f8", maxshape=(None, width), chunks=(c, width))
                self._ds[tl] = d
            f.swmr_mode = True
            if lock is not None:  # before any reader of this process can see the file
                pool().writer_opened(creating, lock)
            os.rename(creating, path)
        except BaseException:
            f.close()
            if os.path.exists(creating):
                os.unlink(creating)
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


def creating_path(path: str) -> str:
    """Where the file that will be ``path`` is created (no reader lists it)."""
    return path + ".creating"


def _extend(ds: h5py.Dataset, rows: np.ndarray) -> None:
    n = ds.shape[0]
    ds.resize(n + len(rows), axis=0)
    ds[n:] = rows


# --------------------------------------------------------------------- reading


def open_readonly(path: str) -> h5py.File:
    """Open an archive file for reading (SWMR: works beside a live or dead writer)."""
    _load_plugins()
    return _h5py().File(path, "r", libver="latest", swmr=True)


class ReadHandle:
    """An open archive file with its datasets looked up once (path lookups cost ~50 us each).

    Open through :func:`pool` only (one handle
    per file per process).

    Parameters
    ----------
    path : str
        The file.

    Attributes
    ----------
    live : bool
        The file was being written when it was opened (or since): every read
        refreshes first, so the handle never serves what it saw before the
        writer's last flush or close.
    lock : threading.RLock
        Held around each refresh-then-read, so threads sharing the handle
        see consistent shapes.
    """

    def __init__(self, path: str) -> None:
        self.h5 = open_readonly(path)
        self._datasets: dict[str, h5py.Dataset] = {}
        self.live = False
        self.lock = threading.RLock()

    def dataset(self, key: str) -> h5py.Dataset:
        """The dataset at ``key`` (e.g. ``"tl/t"``)."""
        ds = self._datasets.get(key)
        if ds is None:
            ds = self._datasets[key] = self.h5[key]
        return ds

    def close(self) -> None:
        """Close the file."""
        self._datasets = {}
        self.h5.close()

    def __enter__(self) -> ReadHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_pool: HandlePool | None = None
_pool_lock = threading.Lock()


def pool() -> HandlePool:
    """The process's one pool of archive file handles (:mod:`.handles`), made on first use."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = HandlePool(ReadHandle)
    return _pool


def read_layout(h: ReadHandle) -> dict[str, tuple[dict[str, FieldSpec], list[str], int]]:
    """Per timeline: ``(field specs, numeric field names, min_level)``."""
    out = {}
    for tl, g in h.h5.items():
        out[tl] = (specs_from_json(g.attrs["fields"]), json.loads(g.attrs["numeric"]), int(g.attrs.get("min_level", 0)))
    return out


def _fresh(h: ReadHandle, key: str, refresh: bool) -> h5py.Dataset:
    """The dataset at ``key``, refreshed if the file may have grown (``h.lock`` held)."""
    ds = h.dataset(key)
    if refresh or h.live:
        ds.refresh()
    return ds


def read_span(h: ReadHandle, timeline: str, refresh: bool) -> tuple[int, float, float]:
    """``(count, t_first, t_last)`` of a timeline (NaN times when empty)."""
    with h.lock:
        ds = _fresh(h, f"{timeline}/t", refresh)
        n = ds.shape[0]
        if not n:
            return 0, float("nan"), float("nan")
        return n, float(ds[0]), float(ds[n - 1])


def read_level_table(h: ReadHandle, timeline: str, level: int, refresh: bool) -> np.ndarray:
    """The stored table of summary level index ``level`` (see :mod:`.summary`)."""
    with h.lock:
        return _fresh(h, f"{timeline}/s{LEVELS[level]}", refresh)[()]


def read_times(h: ReadHandle, timeline: str, i0: int, i1: int) -> np.ndarray:
    """Times ``[i0, i1)`` of a timeline."""
    with h.lock:
        return _fresh(h, f"{timeline}/t", False)[i0:i1]


def read_values(h: ReadHandle, timeline: str, name: str, ftype: str, i0: int, i1: int, refresh: bool) -> np.ndarray:
    """Values ``[i0, i1)`` of a field in the API dtype (float64, bool, str)."""
    with h.lock:
        raw = _fresh(h, f"{timeline}/f/{name}", refresh)[i0:i1]
    if ftype == "bool":
        return raw.astype(bool)
    if ftype == "string":
        return decode_strings(raw)
    return raw.astype(np.float64, copy=False)


def read_into(h: ReadHandle, timeline: str, name: str | None, i0: int, i1: int, out: np.ndarray, refresh: bool) -> None:
    """Rows ``[i0, i1)`` of a float64 column (times when ``name`` is None, else a
    number field) read straight into ``out`` (float64, C-contiguous, ``i1 - i0`` long).

    Saves the allocation of a new array and its later concatenation: the
    reader places every file's rows into one array that is already its
    final size.
    """
    key = f"{timeline}/t" if name is None else f"{timeline}/f/{name}"
    with h.lock:
        _fresh(h, key, refresh and name is not None).read_direct(out, np.s_[i0:i1])


def read_root_attrs(path: str) -> dict[str, Any]:
    """Root attributes of a file (used by a restarting writer)."""
    with pool().borrow(path) as h:
        f = h.h5
        out = {k: f.attrs[k] for k in f.attrs}
        out["_t_last"] = {}
        for tl in f:
            n, _, t_last = read_span(h, tl, refresh=False)
            if n:
                out["_t_last"][tl] = t_last
    return out


def describe(path: str, from_level: int) -> dict[str, dict[str, Any]]:
    """Everything the archive index keeps about one file, in one open.

    Parameters
    ----------
    path : str
        An immutable (closed or crashed) archive file.
    from_level : int
        Summary level index from which the tables are returned.

    Returns
    -------
    dict
        Per timeline: ``fields`` (specs), ``numeric``, ``min_level``,
        ``count``, ``t_first``, ``t_last`` and ``tables`` (level index to
        stored table, levels ``>= max(from_level, min_level)``).
    """
    out: dict[str, dict[str, Any]] = {}
    with pool().borrow(path) as h:
        for tl, (specs, numeric, min_level) in read_layout(h).items():
            count, t_first, t_last = read_span(h, tl, refresh=False)
            tables = {
                i: read_level_table(h, tl, i, refresh=False) for i in range(max(from_level, min_level), len(LEVELS))
            }
            out[tl] = {
                "fields": specs,
                "numeric": numeric,
                "min_level": min_level,
                "count": count,
                "t_first": t_first,
                "t_last": t_last,
                "tables": tables,
            }
    return out
