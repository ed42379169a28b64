"""The archive as a data-node core: ``get_fields`` and ``get_data`` over a directory.

:class:`ArchiveCore` answers the two node questions from an
:class:`~sisock.archive.reader.ArchiveReader`, which picks up new files as a
writer (e.g. the Modbus node) adds them, reads only the files that overlap
a query, and uses the archive's summary levels when ``min_stride`` is
large.  Queries run in the node's worker threads, several at once: the
reader is thread-safe and holds no lock while it reads, so a long query
does not hold up a ``get_fields`` call.  Field listings of ranges asked
before are kept while the archive does not change (:mod:`.listings`).

Limits: a reply that travels as one message is capped at ``max_samples``
values; a streamed binary reply (progressive results, see
:mod:`sisock.core.wire`) at ``max_samples_streamed``.  Beyond them the caller
gets ``{base}.error.too_much_data`` with a ``min_stride`` suggestion.
"""

from __future__ import annotations

import gc
import os

from sisock.core.contract import DataCore
from sisock.core.protocol import Result
from .listings import ListingCache
from .reader import ArchiveReader


class ArchiveCore(DataCore):
    """Node core over one archive directory.

    Parameters
    ----------
    directory : str or os.PathLike
        The archive directory.
    name, description : str
        Data-node name and description.
    max_samples : int
        Values allowed in a single-message reply.
    max_samples_streamed : int
        Values allowed in a streamed reply.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        name: str = "archive",
        description: str = "HDF5 archive",
        max_samples: int = 2_000_000,
        max_samples_streamed: int = 200_000_000,
    ) -> None:
        self.name = name
        self.description = description
        self.reader = ArchiveReader(directory)
        self.listings = ListingCache(self.reader.files)
        self.max_samples = max_samples
        self.max_samples_streamed = max_samples_streamed

    def warm(self) -> int:
        """Learn what the archive holds so the first query is fast; return the timeline count.

        With the archive index this is one read; files the index does not
        describe are opened once each.  The node calls this in a thread at
        start-up.
        """
        # What is learnt here lives as long as the node: keep the garbage
        # collector from walking it, now and at every full collection (for a
        # decade of hourly files, a million objects and half a second each).
        collecting = gc.isenabled()
        gc.disable()
        try:
            count = len(self.reader.timelines())
            gc.freeze()
        finally:
            if collecting:
                gc.enable()
        return count

    def get_fields(self, start: float, end: float) -> tuple[dict, dict]:
        """Fields with data in ``[start, end)`` (the same range again, while no
        writer appends and no file changes, from :mod:`.listings`)."""
        return self.listings.get(start, end, self.reader.fields)

    def get_data(self, fields, start, end, min_stride=None, method="mean", *, streaming: bool = False) -> Result:
        """Samples of ``fields`` in ``[start, end)``, downsampled if asked."""
        return self.reader.read(
            fields, start, end, min_stride, method, max_samples=self.limit(streaming), progressive=streaming
        )
