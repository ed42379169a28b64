"""Web response helpers around the encoder registry (pure, no reactor).

The bodies of ``GET /api/data`` (``format=json``, ``csv`` and ``binary``,
the dashboard's ``SISOCKF1`` frame) are encoders of the one registry,
:mod:`sisock.core.encoders`, which documents each format; ``format=`` picks
one through :data:`~sisock.core.encoders.WEB_FORMATS`. What is left here is
web-only: turning downsampled bools back into bools, counting values, and
:func:`read_binary`, the Python reader of the frame (tests and Python
callers).
"""

from __future__ import annotations

import json
import struct
import numpy as np

from sisock.core.encoders import FRAME, FRAME_MAGIC
from sisock.core.protocol import Result

MAGIC = FRAME_MAGIC
BINARY_TYPE = FRAME


def bools_as_bools(result: Result, bools: list[str], min_stride: float | None, method: str | None) -> None:
    """Give downsampled bool fields back as true/false where every value is 0 or 1.

    A node aggregates bools as 0/1: ``min``, ``max``, ``first``, ``last`` and
    ``minmax`` bins are each a value the field took, so they travel as bools;
    ``mean`` is the fraction of time true and stays a number.
    """
    if min_stride is None or (method or "mean") == "mean":
        return
    for f in bools:
        v = result.data.get(f)
        if v is None:
            continue
        a = np.asarray(v)
        if a.dtype.kind == "f" and a.size and np.isin(a, (0.0, 1.0)).all():
            result.data[f] = a.astype(bool)


def read_binary(frame: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a ``SISOCKF1`` frame (the ``format=binary`` body) back.

    Returns
    -------
    header : dict
    arrays : dict
        ``"t:<timeline>"`` and ``<field>`` to numpy arrays.
    """
    if frame[:8] != MAGIC:
        raise ValueError("not a sisock frame (bad magic)")
    (hlen, _) = struct.unpack("<II", frame[8:16])
    header = json.loads(frame[16 : 16 + hlen])
    body = np.frombuffer(frame, dtype="<f8", offset=16 + hlen)
    arrays: dict[str, np.ndarray] = {}
    for name, tl in header["timelines"].items():
        arrays[f"t:{name}"] = body[tl["offset"] : tl["offset"] + tl["length"]]
    for f, e in header["fields"].items():
        if "values" in e:
            arrays[f] = np.asarray(e["values"], dtype=object)
        else:
            arrays[f] = body[e["offset"] : e["offset"] + e["length"]]
    return header, arrays


def count_values(result: Result) -> int:
    """Number of values in a result (every field's samples)."""
    return result.values_count()
