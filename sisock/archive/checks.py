"""Argument checks of archive queries and the text of their errors."""

from __future__ import annotations

import math

import numpy as np

from ..errors import BadArgument, TooMuchData


def check_range(start: object, end: object) -> tuple[float, float]:
    """``(start, end)`` as floats; finite UNIX seconds with ``end >= start``."""
    for name, v in (("start", start), ("end", end)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
            raise BadArgument(f"argument '{name}' must be a finite number of UNIX seconds, got {v!r}")
    start, end = float(start), float(end)
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


def too_much(limit: int, n: int, nfields: int, start: float, end: float, method: str) -> TooMuchData:
    """The error for a result of ``n`` values over ``limit``, suggesting a ``min_stride``."""
    per_bin = nfields * (2 if method == "minmax" else 1)
    bins = max(1, limit // per_bin - 1)
    suggest = (end - start) / bins if end > start else 1.0
    suggest = float(f"{suggest * 1.01:.3g}")
    return TooMuchData(
        f"the result would hold {n} values ({nfields} field(s)), more than max_samples={limit}; "
        f"pass min_stride >= {suggest:g} s (or request a shorter range or fewer fields)"
    )
