"""Hand polled samples to an archive writer running in its own thread.

The poller's sink runs on the event loop and must never block on disk: an
HDF5 flush can take a few hundred milliseconds, which would delay polls.
:class:`ThreadedArchiveSink` only enqueues; a thread owns the
:class:`~sisock.archive.writer.ArchiveWriter`, concatenates whatever queued
up per group into one batch, appends it, and flushes at least every
``flush_interval`` seconds (so a crash loses at most that much).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from sisock.protocol import FieldSpec

log = logging.getLogger(__name__)

Append = Callable[[str, np.ndarray, dict], None]


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

    def __init__(self, directory: Path | None, timelines: Mapping[str, Mapping[str, FieldSpec]],
                 flush_interval: float = 1.0,
                 on_append: Callable[[str, np.ndarray, dict, float], None] | None = None) -> None:
        self.directory = directory
        self.timelines = timelines
        self.flush_interval = flush_interval
        self.on_append = on_append
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.appended = 0
        self.errors = 0
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

        writer = ArchiveWriter(self.directory, flush_interval=self.flush_interval)
        for name, specs in self.timelines.items():
            writer.define_timeline(name, dict(specs))
        return writer

    def _run(self) -> None:
        try:
            writer = self._open()
        except BaseException as exc:  # reported by start()
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        done = False
        try:
            while not done:
                try:
                    items = [self.queue.get(timeout=self.flush_interval / 4)]
                except queue.Empty:
                    items = []
                while not self.queue.empty():
                    items.append(self.queue.get())
                if items and items[-1] is None:
                    items.pop()
                    done = True
                by_group: dict[str, list] = {}
                for group, t, values in items:
                    by_group.setdefault(group, []).append((t, values))
                for group, batch in by_group.items():
                    t = np.concatenate([b[0] for b in batch])
                    values = {k: np.concatenate([b[1][k] for b in batch]) for k in batch[0][1]}
                    t0 = time.perf_counter()
                    try:
                        if writer is not None:
                            writer.append(group, t, values)
                        self.appended += len(t)
                    except Exception:
                        self.errors += 1
                        log.exception("archiving %d samples of group %r failed", len(t), group)
                    if self.on_append is not None:
                        self.on_append(group, t, values, time.perf_counter() - t0)
                if writer is not None:
                    writer.maybe_flush()
        finally:
            if writer is not None:
                writer.close()
