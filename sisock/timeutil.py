"""Time conventions of the sisock wire protocol (pure, no reactor)."""

from __future__ import annotations

import math
import time

from .errors import BadArgument


def sisock_to_unix_time(t: float, now: float | None = None) -> float:
    """Convert a sisock timestamp to a UNIX timestamp.

    Parameters
    ----------
    t : float
        A sisock time: positive is UNIX seconds; zero or negative is that
        many seconds before now.
    now : float, optional
        The current time (for tests); default :func:`time.time`.

    Returns
    -------
    float
        ``t`` if ``t > 0``, else ``now + t``.
    """
    if t > 0:
        return float(t)
    return (time.time() if now is None else now) + t


def check_time(name: str, value: object) -> float:
    """Validate a time argument received over the wire.

    Parameters
    ----------
    name : str
        Argument name, used in the error message.
    value : object
        What the caller sent.

    Returns
    -------
    float
        The value as a float.

    Raises
    ------
    BadArgument
        If ``value`` is not a finite real number.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadArgument(
            f"argument '{name}' must be a number of seconds (UNIX time, or <= 0 "
            f"for 'seconds before now'), got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(value):
        raise BadArgument(f"argument '{name}' must be finite, got {value!r}")
    return float(value)


def check_interval(start: object, end: object, now: float | None = None) -> tuple[float, float]:
    """Validate and convert a ``(start, end)`` pair to UNIX seconds.

    Raises
    ------
    BadArgument
        If either is not a finite number, or if ``end < start`` after
        conversion.
    """
    s = sisock_to_unix_time(check_time("start", start), now)
    e = sisock_to_unix_time(check_time("end", end), now)
    if e < s:
        raise BadArgument(
            f"argument 'end' ({e:.3f}) is before 'start' ({s:.3f}); "
            "expected start <= end"
        )
    return s, e
