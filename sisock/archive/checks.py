"""Argument checks of archive queries (times and ``min_stride`` as in :mod:`sisock.protocol`)."""

from __future__ import annotations

from ..errors import BadArgument
from ..protocol import check_time


def check_range(start: object, end: object) -> tuple[float, float]:
    """``(start, end)`` as floats; finite UNIX seconds with ``end >= start``."""
    start, end = check_time("start", start), check_time("end", end)
    if end < start:
        raise BadArgument(f"argument 'end' ({end}) is before 'start' ({start})")
    return start, end


def check_max_samples(max_samples: object) -> int | None:
    """``max_samples`` as an int (None: no limit)."""
    if max_samples is None:
        return None
    if isinstance(max_samples, bool) or int(max_samples) < 1:
        raise BadArgument(f"argument 'max_samples' must be a positive integer, got {max_samples!r}")
    return int(max_samples)
