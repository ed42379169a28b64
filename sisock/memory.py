"""In-memory timelines: a bounded ring buffer and range queries (pure numpy).

Used by the example nodes (``weather`` keeps whole small files in memory,
``sensors`` keeps the latest samples in a :class:`RingBuffer`). Both answer
``get_fields`` / ``get_data`` through :func:`query_fields` and
:func:`query_data`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .archive.spec import FieldSpec
from .errors import BadArgument


@dataclass
class Timeline:
    """Samples of one timeline: times and one array per field.

    Attributes
    ----------
    t : numpy.ndarray
        Sorted UNIX times (float64).
    values : dict of str to numpy.ndarray
        One array per field, same length as ``t``.
    specs : dict of str to FieldSpec
        Metadata per field.
    """

    t: np.ndarray
    values: dict[str, np.ndarray]
    specs: dict[str, FieldSpec] = field(default_factory=dict)


class RingBuffer:
    """Fixed-capacity buffer of samples for one timeline.

    Parameters
    ----------
    capacity : int
        Number of samples kept; the oldest are dropped.
    specs : mapping of str to FieldSpec
        The fields (all numeric here).
    """

    def __init__(self, capacity: int, specs: Mapping[str, FieldSpec]) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.specs = dict(specs)
        self._t = np.full(capacity, np.nan)
        self._v = {name: np.full(capacity, np.nan) for name in self.specs}
        self._n = 0  # total samples ever appended
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return min(self._n, self.capacity)

    def append(self, t: float, values: Mapping[str, float]) -> None:
        """Append one sample (missing fields become NaN)."""
        with self._lock:
            i = self._n % self.capacity
            self._t[i] = t
            for name, arr in self._v.items():
                arr[i] = values.get(name, np.nan)
            self._n += 1

    def snapshot(self) -> Timeline:
        """Copy of the buffered samples in time order."""
        with self._lock:
            n = len(self)
            if self._n <= self.capacity:
                order = np.arange(n)
            else:
                start = self._n % self.capacity
                order = np.concatenate([np.arange(start, self.capacity), np.arange(start)])
            return Timeline(self._t[order], {k: v[order] for k, v in self._v.items()},
                            self.specs)


def _window(t: np.ndarray, start: float, end: float) -> slice:
    i0 = int(np.searchsorted(t, start, side="left"))
    i1 = int(np.searchsorted(t, end, side="left"))
    return slice(i0, i1)


def query_fields(timelines: Mapping[str, Timeline], start: float, end: float) -> tuple[dict, dict]:
    """``get_fields`` over in-memory timelines with data in ``[start, end)``."""
    fields: dict = {}
    tls: dict = {}
    for name, tl in timelines.items():
        w = _window(tl.t, start, end)
        if w.stop <= w.start:
            continue
        n = len(tl.t)
        interval = float((tl.t[-1] - tl.t[0]) / (n - 1)) if n > 1 else None
        tls[name] = {"interval": interval, "field": sorted(tl.values)}
        for f in tl.values:
            spec = tl.specs.get(f, FieldSpec())
            fields[f] = {"description": spec.description, "timeline": name,
                         "type": spec.type, "units": spec.units}
    return fields, tls


def query_data(timelines: Mapping[str, Timeline], fields: list[str], start: float,
               end: float, min_stride: float | None = None,
               method: str | None = None, max_samples: int | None = None) -> dict:
    """``get_data`` over in-memory timelines (numpy arrays out).

    Raises
    ------
    BadArgument
        For an unknown ``method``.
    """
    from .downsample import check_method, downsample_columns

    if method is not None:
        check_method(method)
    by_field = {f: name for name, tl in timelines.items() for f in tl.values}
    data: dict[str, np.ndarray] = {f: np.empty(0) for f in fields}
    out_tl: dict[str, dict] = {}
    wanted: dict[str, list[str]] = {}
    for f in fields:
        if f in by_field:
            wanted.setdefault(by_field[f], []).append(f)
    for name, fs in wanted.items():
        tl = timelines[name]
        w = _window(tl.t, start, end)
        if w.stop <= w.start:
            continue
        t = tl.t[w]
        vals = {f: tl.values[f][w] for f in fs}
        if min_stride is not None:
            t, vals = downsample_columns(t, vals, min_stride, method or "mean")
        if max_samples is not None and len(t) > max_samples:
            from .errors import TooMuchData

            span = float(end - start)
            raise TooMuchData(
                f"request would return {len(t)} samples of timeline {name!r}, over the "
                f"limit of {max_samples}; pass min_stride >= {span / max_samples:.6g}")
        out_tl[name] = {"t": t, "finalized_until": float(t[-1]) if len(t) else None}
        data.update(vals)
    return {"data": data, "timeline": out_tl}


__all__ = ["Timeline", "RingBuffer", "query_fields", "query_data", "BadArgument"]
