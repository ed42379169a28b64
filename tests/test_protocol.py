"""Unit tests of the sans-I/O protocol core (no router)."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from sisock.cli import serve
from sisock.core import wire
from sisock.core.errors import BadArgument, TooMuchData
from sisock.core.protocol import (
    MAX_FIELDS,
    MIN_STRIDE_RANGE,
    FieldSpec,
    Result,
    Uris,
    check_min_stride,
    missing_values,
    parse_get_data,
    parse_get_fields,
    timeline_interval,
)

NOW = 1_700_000_000.0


def test_uris_are_built_from_the_base():
    """Every URI of the contract comes from one base URI."""
    u = Uris("x.y")
    assert u.get_data("n") == "x.y.consumer.n.get_data"
    assert u.get_fields("n") == "x.y.consumer.n.get_fields"
    assert u.live("n") == "x.y.consumer.n.live"
    assert (u.add, u.subtract, u.claim) == ("x.y.data_node.add", "x.y.data_node.subtract", "x.y.data_node.claim")
    assert u.list_nodes == "x.y.consumer.get_data_node"
    assert u.node_added == "x.y.consumer.data_node_added"
    assert u.node_subtracted == "x.y.consumer.data_node_subtracted"
    assert u.hub_started == "x.y.hub.started"
    assert u.error("bad_argument") == "x.y.error.bad_argument"
    assert u.is_error("x.y.error.too_much_data") and not u.is_error("wamp.error.runtime_error")
    assert u.full("consumer.get_data_node") == u.list_nodes
    assert u.full("wamp.session.list") == "wamp.session.list"
    assert u.node_name("x.y.consumer.n.get_data") == "n"
    assert u.node_name("x.y.consumer.a.b.get_data") is None  # names are one component
    assert u.node_name("other.consumer.n.get_data") is None
    assert Uris()("a") == "org.simonsobservatory.a"


def test_get_data_positional_and_keywords():
    """0.x positional calls, keywords for positional arguments, and the extensions."""
    c = parse_get_data((["a", "b"], -10, 0), {}, now=NOW)
    assert (c.fields, c.start, c.end, c.min_stride, c.method, c.encoding) == (
        ["a", "b"],
        NOW - 10,
        NOW,
        None,
        "mean",
        None,
    )
    c = parse_get_data((["a"], 1, 2, 5), {"method": "minmax", "encoding": "binary"})
    assert (c.min_stride, c.method, c.encoding) == (5.0, "minmax", "binary")
    c = parse_get_data((), {"field": "a", "start": 1, "end": 2, "min_stride": 0})
    assert c.fields == ["a"] and c.min_stride is None  # 0 means "no downsampling"
    assert parse_get_data((["a", "a", "b"], 1, 2), {}).fields == ["a", "b"]
    assert parse_get_data((["a"], 1, 2), {"encoding": "json"}).encoding is None


@pytest.mark.parametrize(
    "args, kwargs, named",
    [
        ((["a"], 1, 2, None, 5), {}, "positional"),
        ((["a"], 1), {}, "'end'"),
        ((["a"], 1, 2), {"start": 1}, "'start' given twice"),
        ((["a"], 1, 2), {"colour": "red"}, "colour"),
        ((["a"], 1, 2), {"method": "median"}, "'method'"),
        ((["a"], 1, 2), {"encoding": "xml"}, "'encoding'"),
        ((["a"], 1, 2, -1), {}, "'min_stride'"),
        ((["a"], 1, 2, math.nan), {}, "'min_stride'"),
        ((["a"], 1, 2, "10"), {}, "'min_stride'"),
        ((["a"], 1, 2, True), {}, "'min_stride'"),
        ((["a"], 1, 2, MIN_STRIDE_RANGE[1] * 10), {}, "'min_stride'"),
        ((["a"], "now", 2), {}, "'start'"),
        ((["a"], 1, math.inf), {}, "'end'"),
        ((["a"], 10, 5), {}, "'end'"),
        ((["a"], None, 5), {}, "'start'"),
        ((5, 1, 2), {}, "'field'"),
        (([["nested"]], 1, 2), {}, "'field'"),
        ((["x"] * (MAX_FIELDS + 1), 1, 2), {}, "'field'"),
        ((["x" * 5000], 1, 2), {}, "'field'"),
    ],
)
def test_get_data_refusals_name_the_argument(args, kwargs, named):
    """Every malformed get_data call raises BadArgument whose message names what is wrong."""
    with pytest.raises(BadArgument, match=named):
        parse_get_data(args, kwargs)


def test_get_fields_arity_and_times():
    """get_fields takes exactly (start, end) and converts relative times."""
    assert parse_get_fields((-10, 0), {}, now=NOW) == (NOW - 10, NOW)
    for args, kwargs in (((1,), {}), ((1, 2, 3), {}), ((1, 2), {"x": 1})):
        with pytest.raises(BadArgument, match="get_fields takes exactly"):
            parse_get_fields(args, kwargs)
    with pytest.raises(BadArgument, match="'start'"):
        parse_get_fields(([], 2), {})


def test_min_stride_limits():
    """One validator: None/0 mean raw; the range is inclusive and named in the message."""
    lo, hi = MIN_STRIDE_RANGE
    assert check_min_stride(None) is None and check_min_stride(0) is None
    assert check_min_stride(lo) == lo and check_min_stride(hi) == hi
    assert check_min_stride(np.float32(2)) == 2.0
    with pytest.raises(BadArgument, match=f"{lo:g}"):
        check_min_stride(lo / 10)


def test_field_spec_and_missing_values():
    """FieldSpec describes a field as get_fields does; missing values follow the type."""
    spec = FieldSpec("number", "K", "stage")
    assert spec.describe("tl") == {"description": "stage", "timeline": "tl", "type": "number", "units": "K"}
    with pytest.raises(ValueError, match="field type"):
        FieldSpec("complex")
    assert np.isnan(missing_values("number", 2)).all()
    assert missing_values("bool", 2).tolist() == [False, False]
    assert missing_values("string", 1).tolist() == [""]
    assert timeline_interval(np.array([0.0, 1.0, 3.0])) == 1.5
    assert timeline_interval(np.array([5.0])) is None


def test_result_wire_roundtrip_carries_field_timelines():
    """A binary reply carries which timeline each field is on; a list reply keeps the 0.x shape."""
    r = Result(data={"missing": np.empty(0)})
    r.add("fast", np.array([1.0, 2.0, 3.0]), {"a": np.array([1.0, np.nan, 3.0])}, 2.0)
    r.add("slow", np.array([1.0, 2.0, 3.0]), {"s": np.array(["x", "y", "z"])})
    binary = r.to_wire("binary")
    assert binary["field_timeline"] == {"a": "fast", "s": "slow"}
    back = Result.from_wire(binary)
    np.testing.assert_array_equal(back.data["a"], r.data["a"])
    assert back.field_timeline == {"a": "fast", "s": "slow"}  # same lengths: only the key tells
    assert back.timelines["fast"].finalized_until == 2.0
    assert back.groups() == {"fast": ["a"], "slow": ["s"]}
    lists = r.to_wire()
    assert set(lists) == {"data", "timeline"}
    assert lists["data"]["a"] == [1.0, None, 3.0]
    assert r.values_count() == 6


def test_result_from_old_reply_matches_lengths():
    """A 0.x reply (no field_timeline) is grouped by matching array lengths."""
    reply = {
        "data": {"a": [1, 2], "b": [1, 2, 3]},
        "timeline": {
            "x": {"t": [1.0, 2.0], "finalized_until": None},
            "y": {"t": [1.0, 2.0, 3.0], "finalized_until": None},
        },
    }
    assert Result.from_wire(reply).field_timeline == {"a": "x", "b": "y"}
    assert Result.coerce(reply).field_timeline == {"a": "x", "b": "y"}
    with pytest.raises(TypeError, match="expected a Result"):
        Result.coerce([1, 2])


def test_wire_envelope_is_little_endian():
    """Binary envelopes are always little-endian whatever the core's byte order."""
    env = wire.encode_array(np.arange(3, dtype=">f8"), "binary")
    assert env["dtype"] == "<f8"


@pytest.mark.parametrize("command", sorted(serve.SERVERS))
def test_every_server_offers_the_plugin_surface(command):
    """Each server module offers HELP, REACTOR, add_arguments and build."""
    module = serve.server_module(command)
    assert isinstance(module.HELP, str) and module.HELP
    assert module.REACTOR in ("default", "asyncio")
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    assert callable(module.build)


def test_weather_plan_builds_a_core(tmp_path):
    """A server's build() returns a Plan whose core answers the data-core contract."""
    from sisock.site.settings import Settings

    module = serve.server_module("weather")
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    plan = module.build(parser.parse_args([]), Settings(home=tmp_path))
    assert isinstance(plan, serve.Plan)
    field, timeline = plan.core.get_fields(0, 2e9)
    assert timeline["weather"]["interval"] == pytest.approx(300.0)
    r = plan.core.get_data(["temperature", "nope"], 0, 2e9, None, "mean", streaming=False)
    assert isinstance(r, Result) and r.field_timeline == {"temperature": "weather"}
    assert len(r.data["nope"]) == 0
    plan.core.max_samples = 10
    with pytest.raises(TooMuchData, match="min_stride"):
        plan.core.get_data(["temperature"], 0, 2e9, None, "mean", streaming=False)
