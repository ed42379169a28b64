"""HDF5 archive of timelines: writer, reader, summary levels.

Names are exported lazily so that importing :mod:`sisock.archive.spec` (used
by code that never touches HDF5) does not import h5py.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ArchiveReader", "ArchiveWriter", "ArchiveLocked", "FieldSpec"]


def __getattr__(name: str) -> Any:
    if name == "ArchiveReader":
        from .reader import ArchiveReader

        return ArchiveReader
    if name == "ArchiveWriter":
        from .writer import ArchiveWriter

        return ArchiveWriter
    if name == "ArchiveLocked":
        from .lock import ArchiveLocked

        return ArchiveLocked
    if name == "FieldSpec":
        from ..protocol import FieldSpec

        return FieldSpec
    raise AttributeError(name)
