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

from .contract import too_much_data
from .downsample import downsample_columns
from .protocol import FieldSpec, Result, check_method, timeline_interval


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
            return Timeline(self._t[order], {k: v[order] for k, v in self._v.items()}, self.specs)


def _window(t: np.ndarray, start: float, end: float) -> slice:
    i0 = int(np.searchsorted(t, start, side="left"))
    i1 = int(np.searchsorted(t, end, side="left"))
    return slice(i0, i1)


def query_fields(timelines: Mapping[str, Timeline], start: float, end: float) -> tuple[dict, dict]:
    """``get_fields`` over in-memory timelines with data in ``[start, end)``.

    ``interval`` is the mean spacing of the samples inside the range, as for
    every core (:mod:`sisock.core.contract`).
    """
    fields: dict = {}
    tls: dict = {}
    for name, tl in timelines.items():
        w = _window(tl.t, start, end)
        if w.stop <= w.start:
            continue
        tls[name] = {"interval": timeline_interval(tl.t[w]), "field": sorted(tl.values)}
        for f in tl.values:
            fields[f] = tl.specs.get(f, FieldSpec()).describe(name)
    return fields, tls


def query_data(
    timelines: Mapping[str, Timeline],
    fields: list[str],
    start: float,
    end: float,
    min_stride: float | None = None,
    method: str = "mean",
    max_samples: int | None = None,
    live: bool = False,
) -> Result:
    """``get_data`` over in-memory timelines (the :mod:`sisock.core.contract` contract).

    Parameters
    ----------
    timelines : mapping
        The timelines, by name.
    fields : list of str
        Requested fields (unknown ones get an empty array).
    start, end : float
        UNIX seconds, ``[start, end)``.
    min_stride : float, optional
        Downsample (README, "Downsampling").
    method : str
        Downsampling method.
    max_samples : int, optional
        Most values (summed over fields) allowed; over it, ``TooMuchData``.
    live : bool
        True when samples are still being appended (a ring buffer): then
        ``finalized_until`` is the last stored time (downsampled: the start
        of its bin); False for data that never changes (None).

    Raises
    ------
    BadArgument
        For an unknown ``method``.
    TooMuchData
        Over ``max_samples``.
    """
    check_method(method)
    by_field = {f: name for name, tl in timelines.items() for f in tl.values}
    wanted: dict[str, list[str]] = {}
    for f in fields:
        if f in by_field:
            wanted.setdefault(by_field[f], []).append(f)
    windows = {name: _window(timelines[name].t, start, end) for name in wanted}
    if max_samples is not None and min_stride is None:
        values = sum(max(0, windows[n].stop - windows[n].start) * len(fs) for n, fs in wanted.items())
        if values > max_samples:
            raise too_much_data(max_samples, values, len(fields), start, end, method)
    out = Result(data={f: np.empty(0) for f in fields})
    for name, fs in wanted.items():
        tl, w = timelines[name], windows[name]
        if w.stop <= w.start:
            continue
        t = tl.t[w]
        vals = {f: tl.values[f][w] for f in fs}
        if min_stride is not None:
            t, vals = downsample_columns(t, vals, min_stride, method, (start, end))
        final = None
        if live and len(tl.t):
            last = float(tl.t[-1])
            final = last if min_stride is None else float(np.floor(last / min_stride) * min_stride)
        out.add(name, t, vals, final)
    if max_samples is not None and out.values_count() > max_samples:
        raise too_much_data(max_samples, out.values_count(), len(fields), start, end, method)
    return out


__all__ = ["Timeline", "RingBuffer", "query_fields", "query_data"]
