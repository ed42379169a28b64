"""One writer per archive directory: an advisory lock file holding the pid.

The lock is ``<directory>/.writer.lock``, locked with ``fcntl.flock``.  The
kernel drops the lock when the holder dies (even by ``kill -9``), so a stale
lock file of a dead process is simply taken over; the pid written in it is
only informative (it names the holder in the error message).
"""

from __future__ import annotations

import fcntl
import os

from sisock.core.errors import SisockError

LOCK_NAME = ".writer.lock"


class ArchiveLocked(SisockError):
    """Another live process is writing this archive directory."""

    kind = "archive_locked"


class DirectoryLock:
    """Exclusive writer lock of an archive directory.

    Parameters
    ----------
    directory : str
        The archive directory (must exist).

    Raises
    ------
    ArchiveLocked
        From :meth:`acquire` if another live process holds the lock.
    """

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our pid into the lock file."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ArchiveLocked(
                f"archive directory {os.path.dirname(self.path)!r} is being written by "
                f"process {holder}; only one writer per directory is allowed"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (the file stays; it is harmless)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None
