"""Which files answer a query, and how (pure: metadata in, plan out).

A downsampled query at a summary level splits the files overlapping the
range into

* :class:`Run` — consecutive complete files lying wholly inside the range
  whose rows at the level are stored: their rows are read together (from
  the index or a cached concatenation), never per file;
* :class:`Edge` — every other file (range edges, crashed or growing files,
  files without rows at the level): answered piecewise from coarse rows,
  finer rows and raw samples (:func:`sisock.archive.summary.plan_cover`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..downsample import bin_index
from .datafile import ReadableFile


@dataclass(frozen=True)
class Run:
    """Complete files wholly inside the range, read as one block of rows."""

    files: tuple[ReadableFile, ...]


@dataclass(frozen=True)
class Edge:
    """One file read piecewise."""

    file: ReadableFile


def plan_summary_read(files: list[ReadableFile], timeline: str, start: float, end: float,
                      level: int) -> list[Run | Edge]:
    """Steps, in time order, answering ``[start, end)`` at summary ``level``."""
    steps: list[Run | Edge] = []
    run: list[ReadableFile] = []
    for f in files:
        info = f.timelines[timeline]
        if f.complete and level >= info.min_level and start <= info.t_first and info.t_last < end:
            run.append(f)
            continue
        if run:
            steps.append(Run(tuple(run)))
            run = []
        steps.append(Edge(f))
    if run:
        steps.append(Run(tuple(run)))
    return steps


def wholly_inside(f: ReadableFile, timeline: str, start: float, end: float) -> bool:
    """True if every sample of the file's timeline lies in ``[start, end)``."""
    info = f.timelines[timeline]
    return start <= info.t_first and info.t_last < end


def finalized_until(files: list[ReadableFile], timeline: str, end: float, stride: float | None,
                    writer_active: bool) -> float | None:
    """``finalized_until`` of a timeline's reply (see :mod:`sisock.archive.reader`)."""
    if not writer_active:
        return None
    t_last = max(f.timelines[timeline].t_last for f in files[-2:])
    if end <= t_last:
        return None
    if stride is None:
        return t_last
    return float(bin_index(np.array([t_last]), stride)[0]) * stride
