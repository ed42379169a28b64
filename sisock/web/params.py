"""Query parameters of the web API, parsed and validated (pure, no reactor).

Times (``start``, ``end``, Grafana's ``range``) may be given as

* UNIX seconds (``1700000000``, ``1700000000.25``); a number above
  :data:`MS_THRESHOLD` is taken as milliseconds (Grafana's ``${__from}``);
* zero or a negative number: that many seconds before now (sisock);
* ``now`` or ``now-<duration>`` (``now-15m``, ``now-7d``), or Grafana's
  short form ``-<duration>`` (``-15m``, ``-7d``);
* ISO 8601 (``2026-11-28T10:00:00Z``; no zone means UTC).

Durations use Grafana's units: ``ms s m h d w y`` (a year is 365 days).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping

from sisock.core.encoders import WEB_FORMATS
from sisock.core.errors import BadArgument
from sisock.core.protocol import (
    METHODS,
    check_min_stride,
    downsampled_values,
    fitting_min_stride,
    valid_name,
    values_per_bin,
)
from .errors import WebError, bad

#: A time number above this is milliseconds (1e11 s is the year 5138).
MS_THRESHOLD = 1e11
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0, "y": 365 * 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d|w|y)\s*$")
FORMATS = tuple(WEB_FORMATS)  # the registry's web formats (sisock.core.encoders)
#: At most this many fields in one request.
MAX_FIELDS = 64


def parse_duration(name: str, text: str) -> float:
    """Seconds in a duration such as ``500ms``, ``15m``, ``2h``, ``1y``.

    Raises
    ------
    WebError
        400 naming ``name`` and the accepted units.
    """
    m = _DURATION.match(str(text))
    if not m:
        raise bad(
            f"argument '{name}' must be a duration like 500ms, 30s, 15m, 2h, 1d, 1w or "
            f"1y (units ms s m h d w y), got {text!r}"
        )
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_time(name: str, text: object, now: float | None = None) -> float:
    """UNIX seconds from any accepted time form (see the module docstring).

    Parameters
    ----------
    name : str
        Argument name for the error message.
    text : str or number
        What the caller sent.
    now : float, optional
        The current time (tests); default :func:`time.time`.
    """
    now = time.time() if now is None else now
    if isinstance(text, bool):
        raise bad(f"argument '{name}' must be a time, got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip()
        if s.lower() == "now":
            return now
        if s.lower().startswith("now-"):
            return now - parse_duration(name, s[4:])
        if s.startswith("-") and s[-1:].isalpha():  # "-7d", "-15m": before now
            return now - parse_duration(name, s[1:])
        try:
            value = float(s)
        except ValueError:
            return _parse_iso(name, s)
    if not math.isfinite(value):
        raise bad(f"argument '{name}' must be finite, got {text!r}")
    if value > MS_THRESHOLD:
        return value / 1000.0
    if value <= 0:
        return now + value
    return value


def _parse_iso(name: str, s: str) -> float:
    try:
        dt = datetime.fromisoformat(s.replace("z", "Z"))
    except ValueError:
        raise bad(
            f"argument '{name}' must be UNIX seconds, <= 0 for seconds before now, "
            f"'now-<duration>', '-<duration>' or ISO 8601 (e.g. 2026-11-28T10:00:00Z), got {s!r}"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def parse_range(
    start: object, end: object, now: float | None = None, default_start: float = -3600.0
) -> tuple[float, float]:
    """``(start, end)`` in UNIX seconds; ``end`` defaults to now.

    Raises
    ------
    WebError
        400 if either is malformed or ``end`` is before ``start``.
    """
    now = time.time() if now is None else now
    s = parse_time("start", default_start if start in (None, "") else start, now)
    e = parse_time("end", 0 if end in (None, "") else end, now)
    if e < s:
        raise bad(f"argument 'end' ({e:.3f}) is before 'start' ({s:.3f}); expected start <= end")
    return s, e


def parse_fields(text: object) -> list[str]:
    """Comma-separated field names (at least one, at most :data:`MAX_FIELDS`)."""
    if text is None or not str(text).strip():
        raise bad("argument 'fields' is required: comma-separated field names, e.g. fields=a,b")
    names = [f.strip() for f in str(text).split(",") if f.strip()]
    if len(names) > MAX_FIELDS:
        raise bad(f"argument 'fields' names {len(names)} fields; the limit is {MAX_FIELDS}")
    return list(dict.fromkeys(names))


def parse_min_stride(text: object) -> float | None:
    """``min_stride`` in seconds: empty/absent/0 = none, a number, or a duration."""
    if text is None or str(text).strip() in ("", "0", "null", "none"):
        return None
    s = str(text).strip()
    try:
        value = float(s)
    except ValueError:
        value = parse_duration("min_stride", s)
    try:
        return check_min_stride(value)  # the data nodes' own rule
    except BadArgument as exc:
        raise bad(str(exc)) from None


def parse_choice(name: str, text: object, choices: tuple[str, ...], default: str | None) -> str | None:
    """One of ``choices`` (or ``default`` when absent)."""
    if text is None or str(text).strip() == "":
        return default
    s = str(text).strip().lower()
    if s not in choices:
        raise bad(f"argument '{name}' must be one of {', '.join(choices)}, got {text!r}")
    return s


@dataclass(frozen=True)
class DataQuery:
    """A validated ``GET /api/data`` request."""

    node: str
    fields: list[str]
    start: float
    end: float
    min_stride: float | None
    method: str | None
    format: str


def parse_data_query(args: Mapping[str, str], now: float | None = None) -> DataQuery:
    """Validate the query string of ``GET /api/data``.

    Parameters
    ----------
    args : mapping of str to str
        ``node``, ``fields``, ``start``, ``end``, ``min_stride``, ``method``,
        ``format``.
    """
    node = parse_node(args.get("node"))
    fields = parse_fields(args.get("fields"))
    start, end = parse_range(args.get("start"), args.get("end"), now)
    stride = parse_min_stride(args.get("min_stride"))
    method = parse_choice("method", args.get("method"), METHODS, None)
    if method is not None and stride is None:
        raise bad("argument 'method' needs 'min_stride' (the bin width in seconds)")
    fmt = parse_choice("format", args.get("format"), FORMATS, "json")
    return DataQuery(node, fields, start, end, stride, method, fmt or "json")


def parse_node(text: object) -> str:
    """A data-node name (letters, digits, ``_``, ``-``)."""
    if text is None or not str(text):
        raise bad("argument 'node' is required: the name of a data node (see /api/nodes)")
    if not valid_name(str(text)):
        raise bad(f"argument 'node' must be a data-node name (letters, digits, '_' or '-'), got {str(text)!r:.80}")
    return str(text)


def check_budget(span: float, min_stride: float | None, nfields: int, method: str | None, limit: int) -> None:
    """Refuse a downsampled request whose answer would exceed ``limit`` values.

    The answer holds at most ``span / min_stride`` bins per field (two
    values per bin for ``minmax``).

    Raises
    ------
    WebError
        413 ``too_much_data`` with the ``min_stride`` that fits.
    """
    check_total_budget(span, min_stride, [(nfields, method)], limit)


def check_total_budget(span: float, min_stride: float | None, groups: list[tuple[int, str | None]], limit: int) -> None:
    """Refuse a request of several ``(number of fields, method)`` groups whose
    answers together would exceed ``limit`` values (see :func:`check_budget`).

    Raises
    ------
    WebError
        413 ``too_much_data`` with the ``min_stride`` that fits the whole answer.
    """
    if min_stride is None or span <= 0:
        return
    weighted = sum(values_per_bin(method) * max(1, n) for n, method in groups)
    n = downsampled_values(span, min_stride, weighted)
    if n > limit:
        raise too_much(span, weighted, None, limit, n)


def too_much(span: float, nfields: int, method: str | None, limit: int, n: int) -> WebError:
    """The 413 error for ``n`` values over ``limit``, suggesting a ``min_stride``."""
    fits = fitting_min_stride(span, values_per_bin(method) * max(1, nfields), limit)
    return WebError(
        "too_much_data",
        f"the answer would hold about {n} values, over this server's limit of "
        f"{limit}; pass min_stride >= {fits:g} seconds (or a shorter range)",
        min_stride=fits,
        limit=limit,
    )
