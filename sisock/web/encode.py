"""Response bodies of ``GET /api/data`` (pure, no reactor).

A *result* here is what a node's ``get_data`` answers, decoded to numpy:
``{"data": {field: array}, "timeline": {name: {"t": array,
"finalized_until": float | None}}}``, plus ``field_timeline`` mapping each
field to its timeline.

Formats:

``json``
    ``{"node", "start", "end", "min_stride", "method", "field_timeline",
    "data": {field: [values]}, "timeline": {name: {"t": [...],
    "finalized_until"}}}`` -- the ``get_data`` shape; NaN is ``null``.
``csv``
    One header line ``time,t,<field>...``; one row per distinct sample
    time across the requested timelines (``time`` is ISO 8601 UTC,
    ``t`` UNIX seconds printed exactly); a field without a sample at that
    time has an empty cell, and so does NaN. Bools are ``true``/``false``.
``binary`` (the dashboard's format; ``application/vnd.sisock.frame``)
    ::

        8 bytes   magic  b"SISOCKF1"
        4 bytes   header length H (uint32, little-endian)
        4 bytes   zero
        H bytes   header: UTF-8 JSON, padded with spaces to a multiple of 8
        ...       body: float64 little-endian arrays, each at an offset
                  (from the start of the body) that is a multiple of 8

    The header is ``{"node", "start", "end", "min_stride", "method",
    "timelines": {name: {"offset", "length", "finalized_until"}},
    "fields": {field: {"timeline", "offset", "length"}}}`` (offsets and
    lengths in float64 elements); a string field has ``"values": [...]``
    instead of an offset. Numbers and bools (0/1) travel as float64, NaN
    included, so a browser views them with ``new Float64Array(buffer,
    offset, length)`` without parsing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
from datetime import datetime, timezone
from typing import Any, Mapping

import numpy as np

from sisock.core.wire import jsonable_list

MAGIC = b"SISOCKF1"
BINARY_TYPE = "application/vnd.sisock.frame"


def _is_numeric(a: np.ndarray) -> bool:
    return a.dtype.kind in "biuf"


def meta(query: Any) -> dict:
    """The request echo common to every format."""
    return {"node": query.node, "start": query.start, "end": query.end,
            "min_stride": query.min_stride, "method": query.method}


def to_json(query: Any, result: Mapping[str, Any]) -> dict:
    """The ``json`` body (a dict ready for :func:`json.dumps`)."""
    return {**meta(query),
            "field_timeline": dict(result.get("field_timeline", {})),
            "data": {f: jsonable_list(np.asarray(v)) for f, v in result["data"].items()},
            "timeline": {name: {"t": np.asarray(tl["t"], dtype=float).tolist(),
                                "finalized_until": tl.get("finalized_until")}
                         for name, tl in result["timeline"].items()}}


def iso(t: float) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-11-28T10:00:00.000Z``."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _cell(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, float):
        return repr(x) if math.isfinite(x) else ""
    if x is None:
        return ""
    return str(x)


def bools_as_bools(result: Mapping[str, Any], bools: list[str], min_stride: float | None,
                   method: str | None) -> None:
    """Give downsampled bool fields back as true/false where every value is 0 or 1.

    A node aggregates bools as 0/1: ``min``, ``max``, ``first``, ``last`` and
    ``minmax`` bins are each a value the field took, so they travel as bools;
    ``mean`` is the fraction of time true and stays a number.
    """
    if min_stride is None or (method or "mean") == "mean":
        return
    for f in bools:
        v = result["data"].get(f)
        if v is None:
            continue
        a = np.asarray(v)
        if a.dtype.kind == "f" and a.size and np.isin(a, (0.0, 1.0)).all():
            result["data"][f] = a.astype(bool)


def to_csv(fields: list[str], result: Mapping[str, Any]) -> str:
    """The ``csv`` body (see the module docstring)."""
    owner = result.get("field_timeline", {})
    times = [np.asarray(result["timeline"][tl]["t"], dtype=float)
             for tl in dict.fromkeys(owner.get(f) for f in fields) if tl in result["timeline"]]
    t_all = np.unique(np.concatenate(times)) if times else np.zeros(0)
    columns = []
    for f in fields:
        tl = owner.get(f)
        col: list = [None] * len(t_all)
        values = np.asarray(result["data"].get(f, []))
        if tl in result["timeline"] and len(values):
            t = np.asarray(result["timeline"][tl]["t"], dtype=float)
            idx = np.searchsorted(t_all, t)
            items = values.tolist()
            for i, v in zip(idx.tolist(), items):
                col[i] = v
        columns.append(col)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["time", "t", *fields])
    for i, t in enumerate(t_all.tolist()):
        w.writerow([iso(t), repr(t), *(_cell(c[i]) for c in columns)])
    return out.getvalue()


def to_binary(query: Any, result: Mapping[str, Any]) -> bytes:
    """The ``binary`` frame (see the module docstring)."""
    parts: list[bytes] = []
    offset = 0

    def add(a: np.ndarray) -> tuple[int, int]:
        nonlocal offset
        a = np.ascontiguousarray(a, dtype="<f8")
        parts.append(a.tobytes())
        at = offset
        offset += len(a)
        return at, len(a)

    header: dict[str, Any] = {**meta(query), "timelines": {}, "fields": {}}
    for name, tl in result["timeline"].items():
        at, n = add(np.asarray(tl["t"], dtype=float))
        header["timelines"][name] = {"offset": at, "length": n,
                                     "finalized_until": tl.get("finalized_until")}
    owner = result.get("field_timeline", {})
    for f, v in result["data"].items():
        a = np.asarray(v)
        entry: dict[str, Any] = {"timeline": owner.get(f)}
        if len(a) == 0:
            entry.update(offset=0, length=0)
        elif _is_numeric(a):
            at, n = add(a.astype(float))
            entry.update(offset=at, length=n)
        else:
            entry["values"] = jsonable_list(a)
        header["fields"][f] = entry
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    head += b" " * (-len(head) % 8)
    return MAGIC + struct.pack("<II", len(head), 0) + head + b"".join(parts)


def read_binary(frame: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Inverse of :func:`to_binary` (tests and Python callers).

    Returns
    -------
    header : dict
    arrays : dict
        ``"t:<timeline>"`` and ``<field>`` to numpy arrays.
    """
    if frame[:8] != MAGIC:
        raise ValueError("not a sisock frame (bad magic)")
    (hlen, _) = struct.unpack("<II", frame[8:16])
    header = json.loads(frame[16:16 + hlen])
    body = np.frombuffer(frame, dtype="<f8", offset=16 + hlen)
    arrays: dict[str, np.ndarray] = {}
    for name, tl in header["timelines"].items():
        arrays[f"t:{name}"] = body[tl["offset"]: tl["offset"] + tl["length"]]
    for f, e in header["fields"].items():
        if "values" in e:
            arrays[f] = np.asarray(e["values"], dtype=object)
        else:
            arrays[f] = body[e["offset"]: e["offset"] + e["length"]]
    return header, arrays


def count_values(result: Mapping[str, Any]) -> int:
    """Number of values in a result (every field's samples)."""
    return sum(len(v) for v in result["data"].values())
