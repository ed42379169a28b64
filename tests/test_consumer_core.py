"""The consumer core (``sisock.consumer.calls``): call arguments, the 0.x fallback, streamed
parts and typed errors, without a router."""

from __future__ import annotations

import numpy as np
import pytest

from sisock.core import wire
from sisock.consumer.calls import DataCall, NodeVersions, Parts, remote_error
from sisock.core.errors import BadArgument, NotFound, SisockError, TooMuchData
from sisock.core.protocol import Result

pytestmark = pytest.mark.unit
BASE = "org.simonsobservatory"


def test_call_arguments_and_extensions():
    """Positional arguments are the 0.x signature; extensions travel as keywords only when
    the node understands them."""
    call = DataCall(["a", "b"], -60, 0, 1.0, "minmax", binary=True, max_message_bytes=2**24)
    assert call.args == (["a", "b"], -60, 0, 1.0)
    assert call.kwargs == {"method": "minmax", "encoding": "binary", "max_message_bytes": 2**24}
    old = call.for_old_node()
    assert old.args == call.args and old.kwargs == {"method": "minmax"}
    assert DataCall(["a"], 0, 1).kwargs == {"encoding": "binary"}


def test_old_node_fallback_once_and_remembered():
    """A 0.x node's generic refusal of the extensions gives one fallback call; the node is
    remembered; a sisock refusal has no fallback."""
    versions = NodeVersions()
    call = versions.call("n", DataCall(["a"], 0, 1))
    assert versions.fallback("n", call, f"{BASE}.error.bad_argument") is None
    instead = versions.fallback("n", call, "wamp.error.runtime_error")
    assert instead is not None and instead.legacy
    assert versions.fallback("n", instead, "wamp.error.runtime_error") is None
    assert versions.call("n", DataCall(["a"], 0, 1)).legacy
    assert not versions.call("other", DataCall(["a"], 0, 1)).legacy


def test_parts_reassemble_a_streamed_answer():
    """Parts cut by the node's streaming reassemble to the same arrays, ``field_timeline``
    kept."""
    t = np.arange(100_000, dtype=np.float64)
    result = Result()
    result.add("tl", t, {"x": t * 2, "flag": t % 3 == 0})
    reply = result.to_wire("binary")
    parts = Parts()
    chunks = list(
        wire.chunk_reply(
            {"data": result.data, "timeline": {"tl": {"t": t, "finalized_until": None}}}, chunk_bytes=64 * 1024
        )
    )
    assert len(chunks) > 3
    for part in chunks[:-1]:
        parts.add(part)
    last = dict(chunks[-1])
    last["field_timeline"] = reply["field_timeline"]
    parts.add(last)
    got = parts.result()
    np.testing.assert_array_equal(got.timelines["tl"].t, t)
    np.testing.assert_array_equal(got.data["x"], t * 2)
    np.testing.assert_array_equal(got.data["flag"], t % 3 == 0)
    assert got.field_timeline == {"x": "tl", "flag": "tl"} and parts.count == len(chunks)


def test_remote_errors_are_typed_with_details():
    """A node's error becomes a typed error; ``min_stride`` and ``limit`` come from the
    error's keyword arguments (or, from nodes that predate them, from the message)."""
    err = remote_error(BASE, f"{BASE}.error.too_much_data", ["too many"], {"min_stride": 2.5, "limit": 1000})
    assert isinstance(err, TooMuchData) and err.details == {"min_stride": 2.5, "limit": 1000}
    older = remote_error(BASE, f"{BASE}.error.too_much_data", ["pass min_stride >= 0.25 s"])
    assert older.details == {"min_stride": 0.25}
    assert isinstance(remote_error(BASE, f"{BASE}.error.bad_argument", ["x"]), BadArgument)
    assert isinstance(remote_error(BASE, f"{BASE}.error.not_found", ["x"]), NotFound)
    other = remote_error(BASE, f"{BASE}.error.rate_limited", ["later"], {"point": "p"})
    assert type(other) is SisockError and other.kind == "rate_limited" and other.details == {"point": "p"}
    assert remote_error(BASE, "wamp.error.runtime_error", ["boom"]) is None
