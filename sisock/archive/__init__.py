"""HDF5 archive of timelines: writer, index, reader, summary levels, node core.

Modules, one idea each:

* ``catalog`` — file names and states, the directory listing;
* ``lock`` — one writer per directory;
* ``summary`` — summary levels: buckets, stride choice, cover planning;
* ``h5io`` — the HDF5 layout of one file (the only module importing h5py);
* ``writer`` — the append-only writer (rotation, crash recovery);
* ``index`` — the per-directory index of immutable files, appended as files close;
* ``handles`` — a reader's cache of open HDF5 handles;
* ``datafile`` — one file as a reader sees it (metadata, reads);
* ``fileset`` — listing + index -> what every file holds, as one snapshot;
* ``planner`` — which files answer a query, and how (pure);
* ``rowcache`` — byte-bounded caches of summary rows;
* ``checks`` — argument checks and error text of queries;
* ``reader`` — the queries (``timelines``, ``fields``, ``read``);
* ``node`` — the archive as a data-node core (:class:`ArchiveCore`).

Field metadata (:class:`~sisock.core.protocol.FieldSpec`) and the missing value of
each type live in :mod:`sisock.core.protocol`. Names are exported lazily so that
importing this package does not import h5py.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ArchiveCore", "ArchiveReader", "ArchiveWriter", "ArchiveLocked", "FieldSpec"]


def __getattr__(name: str) -> Any:
    if name == "ArchiveReader":
        from .reader import ArchiveReader

        return ArchiveReader
    if name == "ArchiveCore":
        from .core import ArchiveCore

        return ArchiveCore
    if name == "ArchiveWriter":
        from .writer import ArchiveWriter

        return ArchiveWriter
    if name == "ArchiveLocked":
        from .lock import ArchiveLocked

        return ArchiveLocked
    if name == "FieldSpec":
        from sisock.core.protocol import FieldSpec

        return FieldSpec
    raise AttributeError(name)
