"""Wire shapes of the sisock protocol (pure, no reactor).

Arrays as they travel over WAMP (the registry of
:mod:`sisock.core.encoders` applies them to whole results):

* JSON-compatible lists (sisock 0.x, the default), or
* with ``encoding="binary"``, a small envelope per array::

      {"__ndarray__": 1, "dtype": "<f8", "shape": [n], "data": <bytes>}

  ``dtype`` is a NumPy dtype string, always little-endian; ``data`` is the
  raw C-order buffer. Strings and objects have no fixed-width binary form
  and stay lists. With msgpack or cbor the bytes travel raw; with JSON the
  router base64-encodes them.

It also cuts a binary reply into streamed parts (:func:`split_plan`,
:func:`make_part`) and rebuilds them on the client (:class:`Assembler`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


ENVELOPE_KEY = "__ndarray__"


def jsonable_list(a: np.ndarray) -> list:
    """An array as a JSON-ready list: NaN and inf as null (as 0.x consumers expect), text as str."""
    if a.dtype.kind == "f":
        # JSON has no NaN: send null, as sisock 0.x consumers expect
        return [None if not math.isfinite(x) else x for x in a.tolist()]
    if a.dtype.kind in "SU":
        return [str(x) for x in a.astype(str).tolist()]
    if a.dtype.kind == "O":
        return [x.decode() if isinstance(x, bytes) else x for x in a.tolist()]
    return a.tolist()


def encode_array(values: Any, encoding: str | None = None) -> Any:
    """Encode one array for the wire.

    Parameters
    ----------
    values : array-like
        Numbers, bools or strings.
    encoding : {None, "binary"}
        None gives a list; "binary" gives the envelope for numbers/bools.
    """
    if isinstance(values, list):
        return values
    a = np.asarray(values)
    if encoding == "binary" and a.dtype.kind in "biuf":
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        return {
            ENVELOPE_KEY: 1,
            "dtype": a.dtype.str,
            "shape": list(a.shape),
            "data": a.tobytes(),
        }
    return jsonable_list(a)


def decode_array(value: Any) -> np.ndarray:
    """Inverse of :func:`encode_array`: envelope or list to numpy."""
    if isinstance(value, Mapping) and value.get(ENVELOPE_KEY):
        data = value["data"]
        return np.frombuffer(data, dtype=np.dtype(value["dtype"])).reshape(value["shape"])
    if isinstance(value, np.ndarray):
        return value
    if value and all(isinstance(v, str) for v in value):
        return np.asarray(value, dtype=object)
    if value and any(v is None for v in value):
        return np.asarray([np.nan if v is None else v for v in value], dtype=float)
    return np.asarray(value)


# -- streaming ------------------------------------------------------------
#
# A reply too big for one message is sent as WAMP progressive results.
# Every part has the ``get_data`` shape; each binary array in a part is a
# slice of the whole, its envelope carrying ``offset`` and ``total`` (in
# elements) so the receiver can place it into one preallocated array.
# Parts cover consecutive sample ranges of one timeline at a time (its
# times and all its requested fields). Non-binary arrays (strings) are
# never split: they travel whole in the last part.

#: Target size of one streamed part. Crossbar's RawSocket receiver (Twisted's
#: ``Int32StringReceiver``) re-joins a message on every 64 KiB read, so its
#: cost per byte grows with the part; smaller parts cost more per message.
#: Router CPU per 1 M-sample fetch (16 MB, 2-core machine): 128 KiB 34-36 ms,
#: 256 KiB 31-33 ms, 384-768 KiB 31-32 ms, 1 MiB 43 ms, 2 MiB 90 ms. 512 KiB
#: saved about 1 ms of router and client CPU at 1 M and nothing measurable
#: at 10 M, and other receivers (the web bridge's WebSocket) also re-join
#: per read: 256 KiB stays, well below the cliff.
CHUNK_BYTES = 2**18


class ByReference:
    """Bytes a sender writes to the socket where they lie, after the message's other bytes.

    Stands in an envelope's ``data`` for a sender that packs messages itself
    (:class:`sisock.wamp.sending.ReferenceSend`); no serializer knows it.

    Attributes
    ----------
    data : memoryview
        The bytes (format ``B``), a view of the result's array.
    """

    __slots__ = ("data",)

    def __init__(self, data: memoryview) -> None:
        self.data = data


def _envelope_slice(a: np.ndarray, i0: int, i1: int, zero_copy: bool = False, by_reference: bool = False) -> dict:
    part = np.ascontiguousarray(a[i0:i1], dtype=a.dtype.newbyteorder("<"))
    data: Any
    if by_reference:
        data = ByReference(memoryview(part.data).cast("B"))
    else:
        data = memoryview(part.data).cast("B") if zero_copy else part.tobytes()
    return {
        ENVELOPE_KEY: 1,
        "dtype": part.dtype.str,
        "shape": [i1 - i0],
        "data": data,
        "offset": i0,
        "total": int(a.shape[0]),
    }


def _as_result(result: Any) -> Any:
    """A :class:`~sisock.protocol.Result` from a Result or a ``get_data``-shaped mapping."""
    from .protocol import Result  # protocol encodes through this module

    return Result.coerce(result)


def reply_nbytes(result: Any) -> int:
    """Bytes of all numeric arrays of a result (strings not counted)."""
    result = _as_result(result)
    n = sum(a.nbytes for a in result.data.values() if np.asarray(a).dtype.kind in "biuf")
    return n + sum(tl.t.nbytes for tl in result.timelines.values())


@dataclass(frozen=True)
class PartRange:
    """Rows ``[i0, i1)`` of one timeline (its times and ``fields``): one streamed part."""

    timeline: str
    fields: tuple[str, ...]
    i0: int
    i1: int


def split_plan(result: Any, chunk_bytes: int = CHUNK_BYTES) -> tuple[list[PartRange], list[str]]:
    """How a result is cut into parts of about ``chunk_bytes`` raw bytes.

    Returns
    -------
    (ranges, rest)
        The parts in sending order (timeline by timeline, as
        :attr:`Result.timelines <sisock.protocol.Result.timelines>` lists them),
        and the fields that travel whole in the last part (strings, empty
        fields, fields on no timeline).
    """
    result = _as_result(result)
    streamed: set[str] = set()
    ranges: list[PartRange] = []
    for name, tl in result.timelines.items():
        n = len(tl.t)
        fields = tuple(
            f
            for f, v in result.data.items()
            if v.dtype.kind in "biuf" and result.field_timeline.get(f) == name and len(v) == n
        )
        streamed.update(fields)
        row_bytes = 8 + sum(result.data[f].dtype.itemsize for f in fields)
        step = max(1, chunk_bytes // row_bytes)
        ranges.extend(PartRange(name, fields, i0, min(n, i0 + step)) for i0 in range(0, max(n, 1), step))
    return ranges, [k for k in result.data if k not in streamed]


def make_part(result: Any, r: PartRange, zero_copy: bool = False, by_reference: bool = False) -> dict:
    """The ``get_data``-shaped part holding the rows of ``r`` (binary envelopes).

    ``zero_copy``: each envelope's ``data`` is a :class:`memoryview` of the
    result (see :func:`chunk_reply`); ``by_reference``: a :class:`ByReference`
    of it, for a sender that writes it to the socket itself.
    """
    tl = result.timelines[r.timeline]
    t = _envelope_slice(tl.t, r.i0, r.i1, zero_copy, by_reference)
    return {
        "data": {f: _envelope_slice(result.data[f], r.i0, r.i1, zero_copy, by_reference) for f in r.fields},
        "timeline": {r.timeline: {"t": t, "finalized_until": tl.finalized_until}},
    }


def finish_last(result: Any, last: dict | None, rest: list[str]) -> dict:
    """The last part: ``last`` (or an empty reply) plus the fields sent whole."""
    last = last if last is not None else {"data": {}, "timeline": {}}
    for k in rest:
        last["data"][k] = encode_array(result.data[k], "binary")
    return last


def chunk_reply(result: Any, chunk_bytes: int = CHUNK_BYTES, zero_copy: bool = False):
    """Split a result into parts of about ``chunk_bytes`` each.

    Parameters
    ----------
    result : Result or mapping
        A :class:`~sisock.protocol.Result` (or the ``get_data`` dict of one),
        complete: a progressive result is read to the end first.
    chunk_bytes : int
        Target size of one part.
    zero_copy : bool
        Put a :class:`memoryview` of the result's memory in each envelope's
        ``data`` instead of a copy. Only for a serializer that writes any
        buffer as bytes (msgpack); such a part must be serialized while the
        result is alive and unchanged.

    Yields
    ------
    dict
        Parts in ``get_data`` shape; the last one also carries every
        array that was not split (strings, empty fields).
    """
    result = _as_result(result).complete()
    ranges, rest = split_plan(result, chunk_bytes)
    for r in ranges[:-1]:
        yield make_part(result, r, zero_copy)
    yield finish_last(result, make_part(result, ranges[-1], zero_copy) if ranges else None, rest)


class Assembler:
    """Rebuild a whole reply from streamed parts (client side).

    Each binary slice is copied into one preallocated array, so the whole
    result is held once (plus one part).
    """

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.timeline: dict[str, dict] = {}
        self.received = 0  # elements received so far
        self.expected = 0  # elements announced so far
        self.parts = 0  # messages merged

    def _place(self, store: dict, key: str, value: Any) -> None:
        # dict, not typing.Mapping: this runs for every part (isinstance on a
        # typing alias is slow), and deserializers give dicts
        if isinstance(value, dict) and value.get(ENVELOPE_KEY) and "total" in value:
            dtype = np.dtype(value["dtype"])
            arr = store.get(key)
            if not isinstance(arr, np.ndarray):
                arr = store[key] = np.empty(value["total"], dtype=dtype)
                self.expected += value["total"]
            part = np.frombuffer(value["data"], dtype=dtype)
            arr[value["offset"] : value["offset"] + len(part)] = part  # the one copy
            self.received += len(part)
        else:
            store[key] = decode_array(value)

    def add(self, part: Mapping[str, Any]) -> None:
        """Merge one part (a progressive result or the final one)."""
        self.parts += 1
        for k, v in part.get("data", {}).items():
            self._place(self.data, k, v)
        for name, tl in part.get("timeline", {}).items():
            holder = self.timeline.setdefault(name, {"finalized_until": tl.get("finalized_until")})
            holder["finalized_until"] = tl.get("finalized_until")
            self._place(holder, "t", tl["t"])

    def reply(self) -> dict:
        """The assembled reply (numpy arrays in ``get_data`` shape)."""
        return {"data": self.data, "timeline": self.timeline}
