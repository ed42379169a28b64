"""The encoder registry: one Result, every format sisock sends, byte for byte as before."""

from __future__ import annotations

import hashlib
import json

import msgpack
import numpy as np
import pytest

from sisock.core import encoders
from sisock.core.errors import BadArgument
from sisock.core.protocol import Result

pytestmark = pytest.mark.unit


def _result() -> Result:
    r = Result(data={"missing": np.empty(0)})
    r.add(
        "fast",
        np.array([1.5, 2.25, 3.0]),
        {
            "a": np.array([1.0, np.nan, -np.inf]),
            "b": np.array([True, False, True]),
            "i": np.array([1, -2, 3], dtype=np.int16),
        },
        2.0,
    )
    r.add("slow", np.array([1.0, 4.0]), {"s": np.array(["x", "yé"], dtype=object)})
    return r


class _Q:
    node, start, end, min_stride, method = "n", 0.0, 10.0, None, None
    fields = ["a", "b", "i", "s", "missing"]


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


#: sha256 prefixes of each format's bytes for :func:`_result`, as the code before
#: the registry made them (two JSON encoders, two binary encoders in two modules).
BEFORE = {
    "lists": "39f9d32f01ffdf7f",  # WAMP reply, msgpack-serialized
    "ndarray": "e17db12b14acfb94",  # WAMP binary reply, msgpack-serialized
    "json": "36fb424f7f450bf2",
    "csv": "92d1156818a9ed5a",
    "frame": "cfb931cb9b8a72fa",
}


def test_every_format_keeps_its_bytes():
    """Each registered format gives exactly the bytes the code before the registry gave."""
    r, q = _result(), _Q()
    got = {
        "lists": _digest(msgpack.packb(r.to_wire(None))),
        "ndarray": _digest(msgpack.packb(r.to_wire("binary"))),
        "json": _digest(json.dumps(encoders.encode(encoders.JSON, r, q), separators=(",", ":")).encode()),
        "csv": _digest(encoders.encode(encoders.CSV, r, q).encode()),
        "frame": _digest(encoders.encode(encoders.FRAME, r, q)),
    }
    assert got == BEFORE


def test_old_caller_sees_the_0x_shape():
    """Without ``encoding`` a reply is exactly ``{"data", "timeline"}`` of lists, NaN and inf as null."""
    reply = encoders.encode(encoders.LISTS, _result())
    assert set(reply) == {"data", "timeline"}
    assert reply["data"]["a"] == [1.0, None, None]
    assert reply["data"]["s"] == ["x", "yé"] and reply["data"]["missing"] == []
    assert reply["timeline"]["fast"] == {"t": [1.5, 2.25, 3.0], "finalized_until": 2.0}
    assert _result().to_wire("json") == reply


def test_binary_reply_round_trips():
    """The ndarray reply decodes to the same Result: dtypes, values and timelines."""
    r = _result()
    reply = encoders.encode(encoders.NDARRAY, r)
    assert reply["data"]["i"]["dtype"] == "<i2" and reply["field_timeline"]["s"] == "slow"
    back = Result.from_wire(reply)
    assert back.data["i"].dtype == np.int16 and back.data["b"].dtype == bool
    np.testing.assert_array_equal(back.data["a"], r.data["a"])
    assert back.field_timeline == r.field_timeline


def test_names_map_to_registered_media_types():
    """Every WAMP ``encoding`` and web ``format`` name has an encoder, and nothing else is registered."""
    names = set(encoders.WAMP_ENCODINGS.values()) | set(encoders.WEB_FORMATS.values())
    assert names == set(encoders.media_types())
    assert encoders.encoder(encoders.FRAME).media_type == "application/vnd.sisock.frame"


def test_unknown_or_duplicate_media_type_is_refused():
    """Asking for an unregistered media type names it and the known ones; registering twice fails."""
    with pytest.raises(BadArgument, match="image/png.*application/json"):
        encoders.encode("image/png", _result())
    with pytest.raises(ValueError, match="registered already"):
        encoders.register(encoders.CSV)(lambda result, query: "")


def test_progressive_result_is_completed_before_encoding():
    """Encoding a result whose rows are still being read reads them first."""
    t = np.empty(4)
    x = np.empty(4)
    r = Result()
    r.add("tl", t, {"x": x})

    def fill():
        t[:2], x[:2] = [1.0, 2.0], [10.0, 20.0]
        r.filled["tl"] = 2
        yield
        t[2:], x[2:] = [3.0, 4.0], [30.0, 40.0]
        r.filled["tl"] = 4
        yield

    r.filled["tl"] = 0
    r.pending = fill()
    assert encoders.encode(encoders.LISTS, r)["data"]["x"] == [10.0, 20.0, 30.0, 40.0]
    assert r.pending is None and r.filled == {}
