"""HDF5 archive of timelines: writer, index, reader, summary levels, node core.

Names are exported lazily so that importing :mod:`sisock.archive.spec` (used
by code that never touches HDF5) does not import h5py.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ArchiveNode", "ArchiveReader", "ArchiveWriter", "ArchiveLocked", "FieldSpec"]


def __getattr__(name: str) -> Any:
    if name == "ArchiveReader":
        from .reader import ArchiveReader

        return ArchiveReader
    if name == "ArchiveNode":
        from .node import ArchiveNode

        return ArchiveNode
    if name == "ArchiveWriter":
        from .writer import ArchiveWriter

        return ArchiveWriter
    if name == "ArchiveLocked":
        from .lock import ArchiveLocked

        return ArchiveLocked
    if name == "FieldSpec":
        from .spec import FieldSpec

        return FieldSpec
    raise AttributeError(name)
