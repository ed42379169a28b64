"""Open HDF5 handles of one reader: a small LRU with pins, safe across threads.

Each :class:`~sisock.archive.reader.ArchiveReader` owns one
:class:`HandleCache` (nothing is shared between readers).  A read borrows a
handle with ``with cache.borrow(path) as handle:``; while borrowed, a handle is
never closed by another thread trimming the cache or dropping a renamed
file, it is closed when the last borrower returns it.  At most
``max_open`` handles stay open between reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class HandleCache:
    """Least-recently-used open files, keyed by path.

    Parameters
    ----------
    opener : callable
        ``opener(path)`` returns an open handle with a ``close()`` method.
    max_open : int
        Handles kept open when nobody borrows them.
    """

    def __init__(self, opener: Callable[[str], Any], max_open: int = 64) -> None:
        self._opener = opener
        self.max_open = max(1, int(max_open))
        self._lock = threading.Lock()
        self._handles: OrderedDict[str, Any] = OrderedDict()
        self._borrowed: dict[str, int] = {}
        self._doomed: dict[int, Any] = {}  # id -> handle dropped while borrowed
        #: Files opened so far (the cost a reader tries to avoid; for tests and benchmarks).
        self.opens = 0

    @contextmanager
    def borrow(self, path: str) -> Iterator[Any]:
        """The open handle of ``path``, kept open until the block ends."""
        with self._lock:
            h = self._handles.get(path)
            if h is not None:
                self._handles.move_to_end(path)
                self._borrowed[id(h)] = self._borrowed.get(id(h), 0) + 1
        if h is None:
            fresh = self._opener(path)  # outside the lock: opening can take milliseconds
            with self._lock:
                self.opens += 1
                h = self._handles.get(path)
                if h is None:
                    h = self._handles[path] = fresh
                else:  # another thread opened it meanwhile
                    fresh.close()
                self._borrowed[id(h)] = self._borrowed.get(id(h), 0) + 1
        key = id(h)
        try:
            yield h
        finally:
            with self._lock:
                left = self._borrowed[key] - 1
                if left:
                    self._borrowed[key] = left
                else:
                    del self._borrowed[key]
                    doomed = self._doomed.pop(key, None)
                    if doomed is not None:
                        doomed.close()
                self._trim()

    def discard(self, path: str) -> None:
        """Close the handle of ``path`` (now, or when its borrowers are done)."""
        with self._lock:
            h = self._handles.pop(path, None)
            if h is None:
                return
            if self._borrowed.get(id(h)):
                self._doomed[id(h)] = h
            else:
                h.close()

    def _trim(self) -> None:
        excess = len(self._handles) - self.max_open
        if excess <= 0:
            return
        for path in list(self._handles):
            if excess <= 0:
                break
            if not self._borrowed.get(id(self._handles[path])):
                self._handles.pop(path).close()
                excess -= 1

    @property
    def open_count(self) -> int:
        """Handles open now."""
        with self._lock:
            return len(self._handles)

    def close(self) -> None:
        """Close every handle nobody borrows (the others close when returned)."""
        with self._lock:
            for path in list(self._handles):
                h = self._handles.pop(path)
                if self._borrowed.get(id(h)):
                    self._doomed[id(h)] = h
                else:
                    h.close()
