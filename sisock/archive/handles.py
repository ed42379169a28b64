"""Open archive files of one process: one HDF5 handle per file, shared and counted.

Why one handle per file per process
-----------------------------------
HDF5 keeps a single internal file object per file in a process, however
many ``h5py.File`` handles are open on it.  Refreshing a dataset (SWMR
``Dataset.refresh``, needed to see what a live writer flushed) through one
handle while a second handle of the same process has the file open breaks
chunk look-ups for every handle: rows after the first chunk read back as
the first chunk's rows, for good.  Two readers in one process (or one
reader dropped but not yet freed) were enough to return wrong data.

So no archive code opens an archive file for reading except through the
process's :class:`HandlePool` (:func:`sisock.archive.h5io.pool`):

* files are keyed by ``(st_dev, st_ino)``, as HDF5 itself identifies them,
  so the same file under its ``.open.h5`` name and, after the writer's
  rename, under its final name is one handle (an open handle pins the
  inode, so a key cannot be reused while its handle exists);
* at most one handle per key exists at any moment: a thread that needs a
  file another thread is opening waits for that open;
* a handle first opened on a file that was still being written is
  ``live``: every read through it refreshes first (:mod:`.h5io`), so
  it never serves metadata older than the writer's close;
* a writer in the same process registers the file it writes
  (:meth:`HandlePool.writer_opened`) with a lock it holds while it changes
  the file: within one process HDF5 shows a reader the writer's state as
  it is in memory (SWMR's ordering only holds between processes), so a
  read that ran while a batch was half appended saw a dataset already
  resized but not yet filled.  Reads of that file hold the same lock;
* :meth:`HandlePool.exclusive` lets a writer in the same process close a
  file for real: it waits for the reads in progress, closes the pool's
  handle and keeps new reads of that file waiting until the writer has
  closed, renamed and indexed it.  Otherwise the reader's handle would
  hold the file open and HDF5's final flush would happen later, changing
  the file after the archive index recorded its size and modification
  time.

Each :class:`~sisock.archive.reader.ArchiveReader` sees the pool through a
:class:`HandleCache` (its *user* token): a handle stays open between
reads while some reader uses it, and is closed when the last reader using
it releases it, closes, or is freed (no reference cycle holds a reader).
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Key = tuple[int, int]


def file_key(path: str) -> Key:
    """``(device, inode)`` of ``path`` (raises FileNotFoundError if it is gone)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


class _Entry:
    """One open file: its handle, its borrowers and the readers using it."""

    __slots__ = ("key", "handle", "borrowers", "users", "paths")

    def __init__(self, key: Key, handle: Any) -> None:
        self.key = key
        self.handle = handle
        self.borrowers = 0
        self.users: set[int] = set()
        self.paths: set[str] = set()


class HandlePool:
    """The open archive files of a process (see the module docstring).

    Parameters
    ----------
    opener : callable
        ``opener(path)`` returns an open handle with ``close()`` and a
        writable ``live`` attribute.
    max_idle : int
        Handles kept open between reads (least recently used closed first).
    """

    def __init__(self, opener: Callable[[str], Any], max_idle: int = 64) -> None:
        self._opener = opener
        self.max_idle = max(1, int(max_idle))
        self._cond = threading.Condition()
        self._entries: dict[Key, _Entry] = {}
        self._paths: dict[str, Key] = {}
        self._opening: set[Key] = set()
        self._exclusive: dict[Key, int] = {}
        self._writers: dict[Key, Any] = {}
        self._idle: OrderedDict[Key, None] = OrderedDict()
        self._users = itertools.count(1)
        #: Files opened so far.
        self.opens = 0

    # ------------------------------------------------------------- reads
    @contextmanager
    def borrow(self, path: str, *, live: bool = False, user: int | None = None) -> Iterator[Any]:
        """The handle of ``path``, open until the block ends (see :meth:`_borrow`).

        While a writer of this process writes the file, the block holds the
        writer's lock, so it never sees a batch half appended.
        """
        key = file_key(path)
        writing = self._writers.get(key)
        if writing is None:
            with self._borrow(key, path, live, user) as h:
                yield h
            return
        with writing, self._borrow(key, path, live, user) as h:
            yield h

    @contextmanager
    def _borrow(self, key: Key, path: str, live: bool, user: int | None) -> Iterator[Any]:
        """The handle of ``path``, open until the block ends.

        Parameters
        ----------
        path : str
            The file (any of its names).
        live : bool
            The caller knows the file may still be written: reads through the
            handle refresh from now on.
        user : int, optional
            A reader's token (:meth:`new_user`): the handle stays open after
            the block while a user holds it.  Without one it is closed at the
            end of the block unless another reader uses it.

        Raises
        ------
        FileNotFoundError
            ``path`` does not exist (e.g. renamed by the writer meanwhile).
        """
        me = threading.get_ident()
        entry = None
        with self._cond:
            while True:
                owner = self._exclusive.get(key)
                if (owner is not None and owner != me) or key in self._opening:
                    self._cond.wait()
                    continue
                entry = self._entries.get(key)
                if entry is None:
                    self._opening.add(key)
                else:
                    self._take(entry, path, user)
                break
        if entry is None:
            try:
                handle = self._opener(path)  # outside the lock: opening takes milliseconds
            except BaseException:
                with self._cond:
                    self._opening.discard(key)
                    self._cond.notify_all()
                raise
            with self._cond:
                self._opening.discard(key)
                entry = self._entries[key] = _Entry(key, handle)
                self.opens += 1
                self._take(entry, path, user)
                self._cond.notify_all()
        if live:
            entry.handle.live = True
        try:
            yield entry.handle
        finally:
            with self._cond:
                entry.borrowers -= 1
                if not entry.borrowers:
                    if entry.users and key not in self._exclusive:
                        self._idle[key] = None
                        self._trim()
                    else:
                        self._close(entry)
                self._cond.notify_all()

    def _take(self, entry: _Entry, path: str, user: int | None) -> None:
        entry.borrowers += 1
        self._idle.pop(entry.key, None)
        if user is not None:
            entry.users.add(user)
        if path not in entry.paths:
            entry.paths.add(path)
            self._paths[path] = entry.key

    def _close(self, entry: _Entry) -> None:
        """Close an entry nobody borrows (lock held)."""
        if self._entries.get(entry.key) is not entry:
            return
        del self._entries[entry.key]
        self._idle.pop(entry.key, None)
        for p in entry.paths:
            if self._paths.get(p) == entry.key:
                del self._paths[p]
        entry.handle.close()

    def _trim(self) -> None:
        while len(self._idle) > self.max_idle:
            key, _ = self._idle.popitem(last=False)
            self._close(self._entries[key])

    # ------------------------------------------------------------- users
    def new_user(self) -> int:
        """A token for one reader (see :meth:`borrow`)."""
        return next(self._users)

    def discard(self, path: str, user: int) -> None:
        """``user`` no longer needs ``path`` open (closed when nobody else does)."""
        with self._cond:
            key = self._paths.get(path)
            entry = self._entries.get(key) if key is not None else None
            if entry is None:
                return
            entry.users.discard(user)
            if not entry.users and not entry.borrowers:
                self._close(entry)

    def release_user(self, user: int) -> None:
        """``user`` is gone: close every file only it kept open."""
        with self._cond:
            for entry in list(self._entries.values()):
                if user in entry.users:
                    entry.users.discard(user)
                    if not entry.users and not entry.borrowers:
                        self._close(entry)

    # ------------------------------------------------------------- writers
    def writer_opened(self, path: str, lock: Any) -> None:
        """A writer of this process writes ``path`` holding ``lock`` (an RLock)."""
        key = file_key(path)
        with self._cond:
            self._writers[key] = lock

    def writer_closed(self, path: str) -> None:
        """The writer of ``path`` is done with it."""
        key = file_key(path)
        with self._cond:
            self._writers.pop(key, None)

    @contextmanager
    def exclusive(self, path: str) -> Iterator[None]:
        """Keep every other thread of the process off ``path`` during the block.

        Waits for the reads of ``path`` in progress, closes the pool's handle
        and makes new reads wait until the block ends; the calling thread
        may still borrow the file.  A writer closes, renames and indexes a
        file inside this block, so that its close is the file's real close.
        """
        key = file_key(path)
        me = threading.get_ident()
        with self._cond:
            while key in self._exclusive or key in self._opening:
                self._cond.wait()
            self._exclusive[key] = me
            while True:
                entry = self._entries.get(key)
                if entry is None:
                    break
                if not entry.borrowers:
                    self._close(entry)
                    break
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                del self._exclusive[key]
                self._cond.notify_all()

    # ------------------------------------------------------------- state
    def reserve(self, n: int) -> None:
        """Keep at least ``n`` idle handles (a reader's ``max_open_files``)."""
        with self._cond:
            self.max_idle = max(self.max_idle, int(n))

    @property
    def open_count(self) -> int:
        """Handles open now."""
        with self._cond:
            return len(self._entries)


class HandleCache:
    """One reader's view of the process's :class:`HandlePool`.

    Parameters
    ----------
    pool : HandlePool
        The process's pool (:func:`sisock.archive.h5io.pool`).
    max_open : int
        Handles the pool keeps open between reads (at least).
    """

    def __init__(self, pool: HandlePool, max_open: int = 64) -> None:
        self.pool = pool
        self.pool.reserve(max_open)
        self._user = self.pool.new_user()
        #: Files opened for this reader so far (the cost a reader tries to avoid).
        self.opens = 0
        # frees this reader's files when it is closed or dropped (no reference to self)
        self._finalizer = weakref.finalize(self, self.pool.release_user, self._user)

    @contextmanager
    def borrow(self, path: str, live: bool = False) -> Iterator[Any]:
        """The open handle of ``path``, kept open until the block ends."""
        before = self.pool.opens
        with self.pool.borrow(path, live=live, user=self._user) as h:
            if self.pool.opens != before:
                self.opens += 1
            yield h

    def discard(self, path: str) -> None:
        """This reader no longer needs ``path`` open."""
        self.pool.discard(path, self._user)

    def close(self) -> None:
        """Release every file of this reader (idempotent)."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (or the reader was freed)."""
        return not self._finalizer.alive
