"""Wire shapes of the sisock protocol (pure, no reactor).

Data cores return numpy arrays; this module turns them into what travels
over WAMP:

* JSON-compatible lists (sisock 0.x, the default), or
* with ``encoding="binary"``, a small envelope per array (DESIGN section 2)::

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

from .errors import BadArgument

ENVELOPE_KEY = "__ndarray__"
ENCODINGS = (None, "json", "binary")


def check_encoding(encoding: object) -> str | None:
    """Validate the ``encoding`` extension argument."""
    if encoding not in ENCODINGS:
        raise BadArgument(
            f"argument 'encoding' must be one of 'json', 'binary' or omitted, got {encoding!r}"
        )
    return None if encoding == "json" else encoding  # type: ignore[return-value]


def _jsonable_list(a: np.ndarray) -> list:
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
    return _jsonable_list(a)


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


def data_reply(result: Mapping[str, Any], encoding: str | None = None) -> dict:
    """Build the ``get_data`` reply from a core result with numpy arrays.

    Parameters
    ----------
    result : mapping
        ``{"data": {field: array}, "timeline": {name: {"t": array,
        "finalized_until": float | None}}}``.
    encoding : {None, "binary"}

    Returns
    -------
    dict
        The same shape, arrays encoded.
    """
    data = {k: encode_array(v, encoding) for k, v in result["data"].items()}
    timeline = {
        name: {
            "t": encode_array(np.asarray(tl["t"], dtype=np.float64), encoding),
            "finalized_until": tl.get("finalized_until"),
        }
        for name, tl in result["timeline"].items()
    }
    return {"data": data, "timeline": timeline}


def check_fields(field: object) -> list[str]:
    """Validate the ``field`` argument of ``get_data``: a list of names."""
    if isinstance(field, str):
        return [field]
    if not isinstance(field, (list, tuple)) or not all(isinstance(f, str) for f in field):
        raise BadArgument(
            "argument 'field' must be a list of field names (strings), "
            f"got {type(field).__name__} {field!r:.80}"
        )
    return list(field)


def check_min_stride(min_stride: object) -> float | None:
    """Validate ``min_stride``: None or a positive finite number of seconds."""
    if min_stride is None:
        return None
    if isinstance(min_stride, bool) or not isinstance(min_stride, (int, float)):
        raise BadArgument(
            f"argument 'min_stride' must be a number of seconds or null, got {min_stride!r}"
        )
    if not math.isfinite(min_stride) or min_stride <= 0:
        raise BadArgument(
            f"argument 'min_stride' must be > 0 and finite, got {min_stride!r}"
        )
    return float(min_stride)
