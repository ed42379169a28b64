"""Reply size is a contract: every message fits the caller's limit, for every serializer.

The root cause these tests pin down: autobahn's ``ApplicationRunner`` (how
sisock 0.x consumers connect) drops its own connection on any WebSocket
message over 1 MiB, which neither node nor router can see. Nodes therefore
budget replies in encoded bytes (:mod:`sisock.core.budget`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, listed, wait_for
from sisock.core import budget, wire
from sisock.client import RemoteError, connect
from sisock.core.errors import BadArgument, TooMuchData
from sisock.cli.generate import generate

pytestmark = pytest.mark.timeout(240)

BASE = "org.simonsobservatory"
GET_DATA = f"{BASE}.consumer.bigreply.get_data"
END = 1_790_000_000.0
START = END - 86400


@pytest.fixture(scope="module")
def big_node(stack, tmp_path_factory):
    """An archive node over one day of a 1 Hz string and number timeline."""
    d = tmp_path_factory.mktemp("big-archive")
    generate(d, days=1.0, end=END, fast_hours=0.1, burst_minutes=0.5)
    p = stack.start("hdf5-big", "serve", "hdf5", "--name", "bigreply", "--archive", str(d))
    with connect() as c:
        wait_for(lambda: "bigreply" in listed(c), 30, "node never listed:\n" + p.log())
    yield "bigreply"
    p.stop()


def run_runner(serializer: str, calls: list[dict]) -> list[dict]:
    """Run tests/runner_client.py (ApplicationRunner, 1 MiB limit) and parse its lines."""
    out = subprocess.run(
        [sys.executable, str(REPO / "tests" / "runner_client.py"), serializer],
        input=json.dumps(calls),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(REPO),
    )
    # autobahn's logging prefixes printed lines with a timestamp
    lines = [json.loads(m.group(1)) for m in re.finditer(r"^[^{\n]*(\{.*\})$", out.stdout, re.M)]
    assert lines, f"runner printed nothing:\n{out.stderr[-3000:]}"
    return lines


@pytest.mark.parametrize("serializer", ["json", "msgpack", "cbor"])
def test_big_reply_refused_not_dropped(big_node, serializer):
    """Over the caller's 1 MiB: too_much_data with limit and min_stride; the session survives.

    With the suggested ``min_stride`` the same query fits; a binary
    progressive call streams in parts that each fit.
    """
    fields = ["stage_temp", "cryo_state"]
    first = run_runner(
        serializer,
        [
            {"uri": GET_DATA, "args": [fields, START, END]},
            {"uri": GET_DATA, "args": [["stage_temp"], START, END], "progress": True, "kwargs": {"encoding": "binary"}},
            {"uri": GET_DATA, "args": [fields, START, END], "kwargs": {"max_message_bytes": "lots"}},
        ],
    )
    refused, streamed, bad, end = first[0], first[1], first[2], first[-1]
    assert refused.get("error") == f"{BASE}.error.too_much_data", refused
    assert "max_message_bytes=1048576" in refused["message"]
    stride = float(re.search(r"min_stride >= ([0-9.e+-]+) s", refused["message"]).group(1))
    assert 1 < stride < 3600
    assert streamed["ok"]["parts"] >= 2, streamed
    assert streamed["ok"]["data"]["stage_temp"] > 80_000  # a day at 1 Hz, minus gaps
    assert bad.get("error") == f"{BASE}.error.bad_argument" and "max_message_bytes" in bad["message"]
    assert end == {"alive": True} or first[-2] == {"alive": True}, first

    fitted = run_runner(serializer, [{"uri": GET_DATA, "args": [fields, START, END, stride]}])
    assert "ok" in fitted[0], fitted
    n = fitted[0]["ok"]["data"]["cryo_state"]
    assert 0 < n <= 86400 / stride + 1
    assert {"alive": True} in fitted


def test_sisock_client_declares_its_limit(big_node):
    """The sisock client says it accepts 64 MiB, so the same day arrives whole, in lists too."""
    with connect(serializer="json", binary=False) as c:
        r = c.get_data(big_node, ["stage_temp", "cryo_state"], START, END)
        assert len(r.data["cryo_state"]) == len(r.timelines["cryo"].t) > 80_000
        with pytest.raises(RemoteError) as err:  # a caller that declares nothing gets 1 MiB
            c.call(GET_DATA, ["stage_temp", "cryo_state"], START, END)
        assert err.value.uri == f"{BASE}.error.too_much_data"
        assert len(c.nodes()) >= 1  # same session still works


# -- pure budget -------------------------------------------------------------


def _result(n: int, strings: bool = True) -> dict:
    t = 1.7e9 + np.arange(n, dtype=float)
    data = {"x": np.sin(t)}
    if strings:
        data["s"] = np.array(["cooling", "stable"] * (n // 2) + ["x"] * (n % 2), dtype=object)
    return {
        "data": data,
        "timeline": {"tl": {"t": t, "finalized_until": None}},
        "field_timeline": {k: "tl" for k in data},
    }


@pytest.mark.parametrize("n", [0, 1, 1000, 30_000, 200_000])
def test_plan_reply_fits_or_refuses(n):
    """plan_reply returns a reply that fits every serializer, or TooMuchData with a stride."""
    limit = budget.DEFAULT_MESSAGE_BYTES
    r = _result(n)
    try:
        reply, _ = budget.plan_reply(r, 1.7e9, 1.7e9 + n, limit, None, False)
    except TooMuchData as exc:
        assert "min_stride >=" in str(exc) and str(limit) in str(exc)
        return
    assert max(budget.encoded_sizes(reply).values()) <= limit


def test_streamed_parts_fit():
    """A streamed numeric reply is cut in parts that fit the limit even as JSON base64."""
    limit = budget.MIN_MESSAGE_BYTES * 4
    r = _result(100_000, strings=False)
    reply, part = budget.plan_reply(r, 1.7e9, 1.7e9 + 1e5, limit, "binary", True)
    assert reply is None
    parts = list(wire.chunk_reply(r, part))
    assert len(parts) > 2
    assert max(max(budget.encoded_sizes(p).values()) for p in parts) <= limit


def test_streaming_refuses_unsplittable_strings():
    """Strings cannot be split across parts: too many of them are refused, not sent."""
    with pytest.raises(TooMuchData, match="min_stride"):
        budget.plan_reply(_result(200_000), 1.7e9, 1.7e9 + 2e5, 2**20, "binary", True)


def test_live_split():
    """A live payload over the limit is published in pieces that fit, no row lost."""
    limit = budget.MIN_MESSAGE_BYTES
    r = _result(20_000)
    parts = list(budget.split_live(r, limit))
    assert len(parts) > 1
    assert max(max(budget.encoded_sizes(p).values()) for p in parts) <= limit
    assert sum(len(p["timeline"]["tl"]["t"]) for p in parts) == 20_000
    assert sum(len(p["data"]["s"]) for p in parts) == 20_000


@pytest.mark.parametrize("value", [0, -1, "1e6", True, float("nan"), 1000, [1]])
def test_check_limit_rejects(value):
    """max_message_bytes must be a number of bytes >= 64 KiB."""
    with pytest.raises(BadArgument, match="max_message_bytes"):
        budget.check_limit(value)


@pytest.mark.unit
@pytest.mark.parametrize("start", [1.7e9, 1.0, -1e10, -1e12, -1e21, -1e30, -1e300])
def test_suggestion_follows_the_data_not_the_requested_range(start):
    """The min_stride suggested for a reply too big depends on the data, not on how far
    before it the range starts, and is a float an error can carry within the allowed range
    (it grew with the range: -1e20 gave 5.4e9 s, -1e30 an integer no serializer could send)."""
    from sisock.core.protocol import MIN_STRIDE_RANGE

    r = _result(30_000, strings=False)
    here = budget.suggest_min_stride(r, 1.7e9, 1.7e9 + 30_000, budget.DEFAULT_MESSAGE_BYTES, None, "mean")
    got = budget.suggest_min_stride(r, start, 1.7e9 + 30_000, budget.DEFAULT_MESSAGE_BYTES, None, "mean")
    assert isinstance(got, float) and MIN_STRIDE_RANGE[0] <= got <= MIN_STRIDE_RANGE[1]
    assert got == here
    with pytest.raises(TooMuchData) as info:
        budget.plan_reply(r, start, 1.7e9 + 30_000, budget.MIN_MESSAGE_BYTES, None, False)
    import msgpack

    msgpack.packb(info.value.details)  # every serializer can carry it
    assert info.value.details["min_stride"] <= MIN_STRIDE_RANGE[1]
