"""Argument checks of archive queries (times and ``min_stride`` are checked by
:mod:`sisock.core.protocol`, the one source of those rules)."""

from __future__ import annotations

from sisock.core.errors import BadArgument
from sisock.core.protocol import check_range

__all__ = ["check_range", "check_max_samples"]


def check_max_samples(max_samples: object) -> int | None:
    """``max_samples`` as an int (None: no limit)."""
    if max_samples is None:
        return None
    if isinstance(max_samples, bool) or int(max_samples) < 1:
        raise BadArgument(f"argument 'max_samples' must be a positive integer, got {max_samples!r}")
    return int(max_samples)
