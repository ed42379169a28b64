"""Which files answer a query, and how (pure: metadata in, plan out).

A downsampled query at a summary level splits the files overlapping the
range into

* :class:`Run` — consecutive complete files lying wholly inside the range
  whose rows at the level are stored: their rows are read together (from
  the index or a cached concatenation), never per file; found with array
  operations over the file spans, so a year of hourly files costs no
  Python loop;
* :class:`Edge` — every other file (range edges, crashed or growing files,
  files without rows at the level): answered piecewise from coarse rows,
  finer rows and raw samples (:func:`sisock.archive.summary.plan_cover`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sisock.core.downsample import bin_index
from .datafile import ReadableFile
from .fileset import TimelineFiles


@dataclass(frozen=True)
class Run:
    """Files ``lo..hi-1`` (positions in the timeline's file arrays), read as one block of rows."""

    lo: int
    hi: int


@dataclass(frozen=True)
class Edge:
    """One file read piecewise."""

    file: ReadableFile


def inner_mask(t_first: np.ndarray, t_last: np.ndarray, start: float, end: float) -> np.ndarray:
    """Files whose every sample lies in ``[start, end)``."""
    return (t_first >= start) & (t_last < end)


def plan_summary_read(
    files: TimelineFiles, lo: int, hi: int, growing: list[ReadableFile], start: float, end: float, level: int
) -> list[Run | Edge]:
    """Steps, in time order, answering ``[start, end)`` at summary ``level``.

    Parameters
    ----------
    files : TimelineFiles
        The immutable files of the timeline.
    lo, hi : int
        The overlapping ones: positions ``lo..hi-1``.
    growing : list of ReadableFile
        Overlapping files a writer may still append to (after the others).
    """
    usable = (
        inner_mask(files.t_first[lo:hi], files.t_last[lo:hi], start, end)
        & files.complete[lo:hi]
        & (files.min_level[lo:hi] <= level)
    )
    steps: list[Run | Edge] = []
    # boundaries between stretches of usable and unusable files
    cuts = np.flatnonzero(np.diff(usable.astype(np.int8))) + 1
    edges = np.concatenate(([0], cuts, [usable.size])) if usable.size else np.zeros(1, np.int64)
    for a, b in zip(edges[:-1], edges[1:]):
        if usable[a]:
            steps.append(Run(lo + int(a), lo + int(b)))
        else:
            steps.extend(Edge(files.files[i]) for i in range(lo + int(a), lo + int(b)))
    steps.extend(Edge(f) for f in growing)
    return steps


def wholly_inside(f: ReadableFile, timeline: str, start: float, end: float) -> bool:
    """True if every sample of the file's timeline lies in ``[start, end)``."""
    info = f.timelines[timeline]
    return start <= info.t_first and info.t_last < end


def finalized_until(
    files: list[ReadableFile], timeline: str, end: float, stride: float | None, writer_active: bool
) -> float | None:
    """``finalized_until`` of a timeline's reply (see :mod:`sisock.archive.reader`)."""
    if not writer_active:
        return None
    t_last = max(f.timelines[timeline].t_last for f in files[-2:])
    if end <= t_last:
        return None
    if stride is None:
        return t_last
    return float(bin_index(np.array([t_last]), stride)[0]) * stride
