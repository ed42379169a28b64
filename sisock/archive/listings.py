"""Field listings (``get_fields`` answers) of an archive that nothing can change.

Many consumers looking at the same panel ask a node for the same listing:
a dashboard asks before every plot, the notebook client on first use and
every 30 s.  When no writer has a file open, the listing of a range is a
pure function of the directory's files, so :class:`ListingCache` keeps the
last answers per ``(start, end)`` and forgets them all as soon as the file
set changes (a new, renamed or vanished file, or a new archive index).
While a writer appends, nothing is cached: its growing file changes the
counts and spans at every poll.

Each answer is handed out as a copy, so a caller that edits it cannot
change what the next caller gets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from .fileset import FileSet, Snapshot

Listing = tuple[dict, dict]


class ListingCache:
    """The last ``entries`` field listings of an unchanging file set.

    Parameters
    ----------
    files : FileSet
        The reader's file set (refreshed before every look-up).
    entries : int
        Listings kept (least recently used dropped first).
    """

    def __init__(self, files: FileSet, entries: int = 64) -> None:
        self.files = files
        self.entries = int(entries)
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._listings: OrderedDict[tuple[float, float], Listing] = OrderedDict()
        #: Look-ups answered from the cache and computed, since the start.
        self.hits = 0
        self.misses = 0

    def get(self, start: float, end: float, compute: Callable[[float, float], Listing]) -> Listing:
        """The listing of ``[start, end)``: cached, or ``compute(start, end)``."""
        snapshot = self.files.refresh()
        if snapshot.writer_active:
            self.misses += 1
            return compute(start, end)
        key = (float(start), float(end))
        with self._lock:
            if self._snapshot is not snapshot:  # the files changed: forget everything
                self._snapshot = snapshot
                self._listings.clear()
            listing = self._listings.get(key)
            if listing is not None:
                self._listings.move_to_end(key)
                self.hits += 1
        if listing is None:
            self.misses += 1
            # computed on a snapshot at least as new as ``snapshot``; kept under it
            # only while it is the newest one seen (the next look-up refreshes anyway)
            listing = compute(start, end)
            with self._lock:
                if self._snapshot is snapshot:
                    self._listings[key] = listing
                    while len(self._listings) > self.entries:
                        self._listings.popitem(last=False)
        return copy_listing(listing)


def copy_listing(listing: Listing) -> Listing:
    """A copy of a ``get_fields`` answer that shares nothing mutable with it."""
    field, timeline = listing
    return ({k: dict(v) for k, v in field.items()}, {k: {**v, "field": list(v["field"])} for k, v in timeline.items()})
