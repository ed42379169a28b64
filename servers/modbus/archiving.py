"""Hand polled samples to an archive writer running in its own thread.

The poller's sink runs on the event loop and must never block on disk: an
HDF5 flush can take a few hundred milliseconds, which would delay polls.
:class:`ThreadedArchiveSink` only enqueues; a thread owns the
:class:`~sisock.archive.writer.ArchiveWriter`, concatenates whatever queued
up per group into one batch, appends it, and flushes at least every
``flush_interval`` seconds (so a crash loses at most that much). A sample
waits in the queue (up to a tenth of the interval) and is polled up to one
poll period before it is queued, so the writer itself flushes every
:data:`FLUSH_SHARE` of ``flush_interval``: what a ``kill -9`` takes is then
younger than ``flush_interval`` (20 trials at 0.5 s: max loss 0.38 s; with
the whole interval given to the writer it was 0.62 s).

Disk full: HDF5 does not recover from a failed write inside a process (a
file whose flush hit ENOSPC cannot be closed cleanly, and a reader in the
same process that opens it again can crash), so the sink never lets the
disk fill: before each batch it checks the free space of the archive's
filesystem (``statvfs``, at most every 0.5 s) and, below ``min_free_bytes``,
closes the current file cleanly (every sample so far stays readable),
logs one clear error and suspends archiving; polling and live publishing
go on; samples that arrive meanwhile are counted in ``dropped``. When free
space is back above twice ``min_free_bytes`` it logs once and resumes in a
new file. Any other write failure (directory unwritable or gone, a
sudden ENOSPC) takes the same path: one error, retry every
``retry_interval`` seconds.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from sisock.core.protocol import FieldSpec

log = logging.getLogger(__name__)

Append = Callable[[str, np.ndarray, dict], None]

#: Share of ``flush_interval`` the writer waits between flushes; the rest
#: covers queueing and polling so that loss on a crash stays within it.
FLUSH_SHARE = 0.6


class ThreadedArchiveSink:
    """A poller sink that archives in a background thread.

    Parameters
    ----------
    directory : pathlib.Path or None
        Archive directory; None keeps no archive (``append`` still runs).
    timelines : mapping
        Timeline name -> field name -> :class:`FieldSpec` to define.
    flush_interval : float
        Seconds between flushes at most.
    on_append : callable, optional
        Called in the writer thread as ``on_append(group, t, values, seconds)``
        after each batch (for statistics).
    """

    def __init__(
        self,
        directory: Path | None,
        timelines: Mapping[str, Mapping[str, FieldSpec]],
        flush_interval: float = 1.0,
        on_append: Callable[[str, np.ndarray, dict, float], None] | None = None,
        retry_interval: float = 2.0,
        min_free_bytes: int = 64 * 2**20,
    ) -> None:
        self.directory = directory
        self.timelines = timelines
        self.flush_interval = flush_interval
        self.on_append = on_append
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.appended = 0
        self.errors = 0
        self.dropped = 0  # samples not archived because writing failed
        self.outages = 0  # times writing failed and was suspended
        self.retry_interval = retry_interval
        self.min_free_bytes = int(min_free_bytes)
        self._space_checked = 0.0
        self._broken: list = []  # writers whose files failed: kept, never closed again
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="archive-writer", daemon=True)

    def start(self) -> "ThreadedArchiveSink":
        """Open the writer in its thread; raise if that fails."""
        self.thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure
        return self

    def __call__(self, group: str, t: np.ndarray, values: dict) -> None:
        """Poller sink: enqueue one poll's samples (never blocks)."""
        self.queue.put((group, t, values))

    def close(self) -> None:
        """Write what is queued, flush, close the files."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()

    def _open(self):
        if self.directory is None:
            return None
        from sisock.archive.writer import ArchiveWriter

        writer = ArchiveWriter(self.directory, flush_interval=self.flush_interval * FLUSH_SHARE)
        for name, specs in self.timelines.items():
            writer.define_timeline(name, dict(specs))
        return writer

    def free_bytes(self) -> int | None:
        """Free bytes (for unprivileged users) on the archive's filesystem."""
        if self.directory is None:
            return None
        try:
            st = os.statvfs(self.directory)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def _low_space(self, suspended: bool) -> bool:
        """True when archiving must (stay) suspended for lack of space."""
        free = self.free_bytes()
        if free is None:
            return False
        return free < self.min_free_bytes * (2 if suspended else 1)

    def _abandon(self, writer, exc: BaseException) -> None:
        """Writing failed: report once, close what can be closed, retry later."""
        self.outages += 1
        log.error(
            "archive %s: writing failed (%s: %s); polling and live publishing go on, "
            "new samples are not archived until writing works again (retrying every "
            "%g s); everything flushed before stays readable",
            self.directory,
            type(exc).__name__,
            _short(exc),
            self.retry_interval,
        )
        try:
            writer.close()
        except BaseException:  # a failed HDF5 file: never touch it again, free the lock
            self._broken.append(writer)
            try:
                writer._lock.release()
            except BaseException:
                pass

    def _run(self) -> None:
        try:
            writer = self._open()
        except BaseException as exc:  # reported by start()
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        broken = False  # writing failed; waiting to retry
        retry_at = 0.0
        done = False
        try:
            while not done:
                try:
                    items = [self.queue.get(timeout=self.flush_interval / 10)]
                except queue.Empty:
                    items = []
                while not self.queue.empty():
                    items.append(self.queue.get())
                if items and items[-1] is None:
                    items.pop()
                    done = True
                now = time.monotonic()
                if writer is not None and not broken and now - self._space_checked > 0.5:
                    self._space_checked = now
                    if self._low_space(False):
                        self.outages += 1
                        log.error(
                            "archive %s: only %d bytes free on its filesystem, less than "
                            "the %d kept free; archiving is suspended (polling and live "
                            "publishing go on, everything archived so far stays "
                            "readable) until twice that is free",
                            self.directory,
                            self.free_bytes() or 0,
                            self.min_free_bytes,
                        )
                        try:
                            writer.close()
                        except Exception as exc:
                            log.error("archive %s: closing failed: %s", self.directory, _short(exc))
                        writer, broken = None, True
                        retry_at = now
                if broken and now >= retry_at:
                    retry_at = now + self.retry_interval
                    if not self._low_space(True):
                        try:
                            writer = self._open()
                            broken = False
                            log.warning(
                                "archive %s: archiving again (new file); %d samples were not archived meanwhile",
                                self.directory,
                                self.dropped,
                            )
                        except Exception:
                            pass
                by_group: dict[str, list] = {}
                for group, t, values in items:
                    by_group.setdefault(group, []).append((t, values))
                for group, batch in by_group.items():
                    t = np.concatenate([b[0] for b in batch])
                    values = {k: np.concatenate([b[1][k] for b in batch]) for k in batch[0][1]}
                    t0 = time.perf_counter()
                    if broken:
                        self.dropped += len(t)
                        continue
                    try:
                        if writer is not None:
                            writer.append(group, t, values)
                        self.appended += len(t)
                    except (OSError, RuntimeError) as exc:  # disk: suspend archiving
                        self.dropped += len(t)
                        self._abandon(writer, exc)
                        writer, broken = None, True
                        retry_at = time.monotonic() + self.retry_interval
                        continue
                    except Exception:
                        self.errors += 1
                        log.exception("archiving %d samples of group %r failed", len(t), group)
                    if self.on_append is not None:
                        self.on_append(group, t, values, time.perf_counter() - t0)
                if writer is not None and not broken:
                    try:
                        writer.maybe_flush()
                    except (OSError, RuntimeError) as exc:
                        self._abandon(writer, exc)
                        writer, broken = None, True
                        retry_at = time.monotonic() + self.retry_interval
        finally:
            if writer is not None and not broken:
                try:
                    writer.close()
                except (OSError, RuntimeError) as exc:
                    log.error("archive %s: closing failed: %s", self.directory, _short(exc))


def _short(exc: BaseException) -> str:
    """First line of an HDF5/OS error, without HDF5's buffer details."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for marker in ("error message = '", "errno = "):
        if marker in str(exc):
            tail = str(exc).split(marker, 1)[1]
            return f"{text.split('(')[0].strip()} ({marker.split(' ')[0]} {tail.split(',')[0]})"
    return text[:200]
