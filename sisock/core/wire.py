"""Wire shapes of the sisock protocol (pure, no reactor).

Data cores return numpy arrays; this module turns them into what travels
over WAMP:

* JSON-compatible lists (sisock 0.x, the default), or
* with ``encoding="binary"``, a small envelope per array::

      {"__ndarray__": 1, "dtype": "<f8", "shape": [n], "data": <bytes>}

  ``dtype`` is a NumPy dtype string, always little-endian; ``data`` is the
  raw C-order buffer. Strings and objects have no fixed-width binary form
  and stay lists. With msgpack or cbor the bytes travel raw; with JSON the
  router base64-encodes them.
"""

from __future__ import annotations

import math
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

#: Target size of one streamed part. Small enough that neither RawSocket
#: (16 MiB per message) nor the receive buffers of autobahn's RawSocket
#: protocols, which re-join a message on every read of 64-256 KiB, pay
#: much for it; large enough that per-message costs stay small.
CHUNK_BYTES = 2**18


def _envelope_slice(a: np.ndarray, i0: int, i1: int, zero_copy: bool = False) -> dict:
    part = np.ascontiguousarray(a[i0:i1], dtype=a.dtype.newbyteorder("<"))
    data = memoryview(part.data).cast("B") if zero_copy else part.tobytes()
    return {ENVELOPE_KEY: 1, "dtype": part.dtype.str, "shape": [i1 - i0],
            "data": data, "offset": i0, "total": int(a.shape[0])}


def reply_nbytes(result: Mapping[str, Any]) -> int:
    """Bytes of all numeric arrays of a core result (strings not counted)."""
    n = 0
    for v in result["data"].values():
        a = np.asarray(v)
        if a.dtype.kind in "biuf":
            n += a.nbytes
    for tl in result["timeline"].values():
        n += np.asarray(tl["t"]).nbytes
    return n


def field_timelines(result: Mapping[str, Any]) -> dict[str, str]:
    """Which timeline each field of a core result belongs to.

    Uses ``result["field_timeline"]`` when the core provides it, else
    matches array lengths (a field whose length fits several timelines is
    left out, and then travels unsplit).
    """
    given = result.get("field_timeline")
    if given:
        return dict(given)
    return match_by_length({k: len(v) for k, v in result["data"].items()},
                           {name: len(tl["t"]) for name, tl in result["timeline"].items()})


def chunk_reply(result: Mapping[str, Any], chunk_bytes: int = CHUNK_BYTES,
                zero_copy: bool = False):
    """Split a core result into parts of about ``chunk_bytes`` each.

    Parameters
    ----------
    result : mapping
        Core ``get_data`` result with numpy arrays.
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
    data = {k: np.asarray(v) for k, v in result["data"].items()}
    owner = field_timelines(result)
    streamed: set[str] = set()
    pending: dict | None = None
    for name, tl in result["timeline"].items():
        t = np.asarray(tl["t"], dtype=np.float64)
        fields = [f for f, v in data.items()
                  if v.dtype.kind in "biuf" and owner.get(f) == name and len(v) == len(t)]
        streamed.update(fields)
        row_bytes = 8 + sum(data[f].dtype.itemsize for f in fields)
        step = max(1, chunk_bytes // row_bytes)
        for i0 in range(0, max(len(t), 1), step):
            i1 = min(len(t), i0 + step)
            part = {
                "data": {f: _envelope_slice(data[f], i0, i1, zero_copy) for f in fields},
                "timeline": {name: {"t": _envelope_slice(t, i0, i1, zero_copy),
                                    "finalized_until": tl.get("finalized_until")}},
            }
            if pending is not None:
                yield pending
            pending = part
    last = pending if pending is not None else {"data": {}, "timeline": {}}
    for k, v in data.items():
        if k not in streamed:
            last["data"][k] = encode_array(v, "binary")
    yield last


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
            arr[value["offset"]: value["offset"] + len(part)] = part  # the one copy
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


def match_by_length(fields: Mapping[str, int], timelines: Mapping[str, int]) -> dict[str, str]:
    """The one guess of which timeline a field is on, for replies that do not say
    (sisock 0.x nodes): the timeline with as many samples, when exactly one has.

    Parameters
    ----------
    fields, timelines : mapping of str to int
        Lengths of each field's values and of each timeline's times.
    """
    by_len: dict[int, list[str]] = {}
    for name, n in timelines.items():
        by_len.setdefault(n, []).append(name)
    out = {}
    for f, n in fields.items():
        names = by_len.get(n, [])
        if n and len(names) == 1:
            out[f] = names[0]
    return out
