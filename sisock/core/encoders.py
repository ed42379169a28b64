"""One registry of encoders: a :class:`~sisock.core.protocol.Result` to what a format sends.

Every shape a ``get_data`` answer leaves sisock in is made here, from the
one result type, by an encoder registered under its media type (as tiled's
serialization registry maps a media type to an encode function):

================================================  =========================================
media type                                        what it is, who asks for it
================================================  =========================================
``application/vnd.sisock.reply+lists``            WAMP reply of sisock 0.x: ``{"data",
                                                  "timeline"}`` with JSON-ready lists (NaN
                                                  as null); the default ``encoding``
``application/vnd.sisock.reply+ndarray``          WAMP reply with ``encoding="binary"``:
                                                  numbers and bools as ``__ndarray__``
                                                  envelopes (:mod:`sisock.core.wire`), plus
                                                  ``field_timeline``; streamed in parts
``application/json``                              web ``GET /api/data?format=json``
``text/csv``                                      web ``format=csv``
``application/vnd.sisock.frame``                  web ``format=binary``: the ``SISOCKF1``
                                                  frame the dashboard reads
================================================  =========================================

An encoder is ``encode(result, query)``; ``query`` carries what the web
formats echo (``node``, ``start``, ``end``, ``min_stride``, ``method``,
``fields``) and is ignored by the WAMP replies. :data:`WAMP_ENCODINGS` and
:data:`WEB_FORMATS` map the names callers use (``encoding=`` on the WAMP
call, ``format=`` on the web) to media types. Both JSON shapes share
:func:`lists`; both binary shapes write little-endian C-order arrays.

Frame layout (``application/vnd.sisock.frame``)::

    8 bytes   magic  b"SISOCKF1"
    4 bytes   header length H (uint32, little-endian)
    4 bytes   zero
    H bytes   header: UTF-8 JSON, padded with spaces to a multiple of 8
    ...       body: float64 little-endian arrays, each at an offset
              (from the start of the body) that is a multiple of 8

The header is ``{"node", "start", "end", "min_stride", "method",
"timelines": {name: {"offset", "length", "finalized_until"}},
"fields": {field: {"timeline", "offset", "length"}}}`` (offsets and lengths
in float64 elements); a string field has ``"values": [...]`` instead of an
offset. Numbers and bools (0/1) travel as float64, NaN included, so a
browser views them with ``new Float64Array(buffer, offset, length)``.

CSV: one header line ``time,t,<field>...``; one row per distinct sample
time across the requested timelines (``time`` ISO 8601 UTC, ``t`` UNIX
seconds printed exactly); a field without a sample at that time has an
empty cell, and so does NaN. Bools are ``true``/``false``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np

from . import wire
from .errors import BadArgument
from .protocol import Result

__all__ = [
    "Encoder",
    "register",
    "encoder",
    "encode",
    "media_types",
    "lists",
    "LISTS",
    "NDARRAY",
    "JSON",
    "CSV",
    "FRAME",
    "WAMP_ENCODINGS",
    "WEB_FORMATS",
    "FRAME_MAGIC",
]

LISTS = "application/vnd.sisock.reply+lists"
NDARRAY = "application/vnd.sisock.reply+ndarray"
JSON = "application/json"
CSV = "text/csv"
FRAME = "application/vnd.sisock.frame"

#: The WAMP ``encoding`` extension's values (None: the 0.x default) -> media type.
WAMP_ENCODINGS: dict[str | None, str] = {None: LISTS, "json": LISTS, "binary": NDARRAY}
#: The web ``format=`` values -> media type.
WEB_FORMATS: dict[str, str] = {"json": JSON, "csv": CSV, "binary": FRAME}

FRAME_MAGIC = b"SISOCKF1"

#: ``encode(result, query)``.
EncodeFn = Callable[[Result, Any], Any]


@dataclass(frozen=True)
class Encoder:
    """One registered encoder.

    Attributes
    ----------
    media_type : str
        The key it is registered under.
    encode : callable
        ``encode(result, query) -> dict | str | bytes``.
    """

    media_type: str
    encode: EncodeFn


_REGISTRY: dict[str, Encoder] = {}


def register(media_type: str) -> Callable[[EncodeFn], EncodeFn]:
    """Decorator: register ``fn`` as the encoder of ``media_type`` (once)."""

    def deco(fn: EncodeFn) -> EncodeFn:
        if media_type in _REGISTRY:
            raise ValueError(f"an encoder for {media_type!r} is registered already")
        _REGISTRY[media_type] = Encoder(media_type, fn)
        return fn

    return deco


def media_types() -> list[str]:
    """Every registered media type."""
    return list(_REGISTRY)


def encoder(media_type: str) -> Encoder:
    """The encoder of ``media_type``.

    Raises
    ------
    BadArgument
        Naming the media type and the registered ones.
    """
    try:
        return _REGISTRY[media_type]
    except KeyError:
        raise BadArgument(f"no encoder for {media_type!r}; registered: {', '.join(_REGISTRY)}") from None


def encode(media_type: str, result: Result, query: Any = None) -> Any:
    """``result`` in ``media_type`` (a progressive result is read to the end first)."""
    return encoder(media_type).encode(result.complete(), query)


# -- shared pieces -----------------------------------------------------------


def lists(result: Result) -> dict:
    """``{"data", "timeline"}`` with JSON-ready lists: the body both JSON shapes share."""
    return {
        "data": {k: wire.jsonable_list(np.asarray(v)) for k, v in result.data.items()},
        "timeline": {
            name: {"t": wire.jsonable_list(np.asarray(tl.t, dtype=np.float64)), "finalized_until": tl.finalized_until}
            for name, tl in result.timelines.items()
        },
    }


def meta(query: Any) -> dict:
    """The request echo of the web formats."""
    return {
        "node": query.node,
        "start": query.start,
        "end": query.end,
        "min_stride": query.min_stride,
        "method": query.method,
    }


# -- WAMP replies --------------------------------------------------------------


@register(LISTS)
def _wamp_lists(result: Result, query: Any = None) -> dict:
    """The sisock 0.x reply: exactly ``{"data", "timeline"}``, lists only."""
    return lists(result)


@register(NDARRAY)
def _wamp_ndarray(result: Result, query: Any = None) -> dict:
    """Numbers and bools as binary envelopes; strings as lists; ``field_timeline``."""
    return {
        "data": {k: wire.encode_array(v, "binary") for k, v in result.data.items()},
        "timeline": {
            name: {
                "t": wire.encode_array(np.asarray(tl.t, dtype=np.float64), "binary"),
                "finalized_until": tl.finalized_until,
            }
            for name, tl in result.timelines.items()
        },
        "field_timeline": dict(result.field_timeline),
    }


# -- web bodies ------------------------------------------------------------------


@register(JSON)
def _web_json(result: Result, query: Any) -> dict:
    """The ``json`` body (a dict ready for :func:`json.dumps`; NaN as null)."""
    return {**meta(query), "field_timeline": dict(result.field_timeline), **lists(result)}


def iso(t: float) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-11-28T10:00:00.000Z``."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cell(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, float):
        return repr(x) if math.isfinite(x) else ""
    if x is None:
        return ""
    return str(x)


@register(CSV)
def _web_csv(result: Result, query: Any) -> str:
    """The ``csv`` body: the columns are ``query.fields``, in order."""
    fields = list(query.fields)
    owner = result.field_timeline
    times = [
        np.asarray(result.timelines[tl].t, dtype=float)
        for tl in dict.fromkeys(owner.get(f) for f in fields)
        if tl in result.timelines
    ]
    t_all = np.unique(np.concatenate(times)) if times else np.zeros(0)
    columns = []
    for f in fields:
        tl = owner.get(f)
        col: list = [None] * len(t_all)
        values = np.asarray(result.data.get(f, []))
        if tl in result.timelines and len(values):
            idx = np.searchsorted(t_all, np.asarray(result.timelines[tl].t, dtype=float))
            for i, v in zip(idx.tolist(), values.tolist()):
                col[i] = v
        columns.append(col)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["time", "t", *fields])
    for i, t in enumerate(t_all.tolist()):
        w.writerow([iso(t), repr(t), *(_cell(c[i]) for c in columns)])
    return out.getvalue()


@register(FRAME)
def _web_frame(result: Result, query: Any) -> bytes:
    """The ``SISOCKF1`` frame (module docstring)."""
    parts: list[bytes] = []
    offset = 0

    def add(a: np.ndarray) -> tuple[int, int]:
        nonlocal offset
        parts.append(np.ascontiguousarray(a, dtype="<f8").tobytes())
        at = offset
        offset += len(a)
        return at, len(a)

    header: dict[str, Any] = {**meta(query), "timelines": {}, "fields": {}}
    for name, tl in result.timelines.items():
        at, n = add(np.asarray(tl.t, dtype=float))
        header["timelines"][name] = {"offset": at, "length": n, "finalized_until": tl.finalized_until}
    for f, v in result.data.items():
        a = np.asarray(v)
        entry: dict[str, Any] = {"timeline": result.field_timeline.get(f)}
        if len(a) == 0:
            entry.update(offset=0, length=0)
        elif a.dtype.kind in "biuf":
            at, n = add(a.astype(float))
            entry.update(offset=at, length=n)
        else:
            entry["values"] = wire.jsonable_list(a)
        header["fields"][f] = entry
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    head += b" " * (-len(head) % 8)
    return FRAME_MAGIC + struct.pack("<II", len(head), 0) + head + b"".join(parts)
