"""Unit tests of the web bridge's pure parts: parameters, Grafana bodies, encoders.

No router and no reactor here.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from sisock.core import encoders
from sisock.core.protocol import Result
from sisock.web import encode, grafana, params
from sisock.web.errors import WebError

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("1y", 365 * 86400),
        ("1.5h", 5400),
        (" 10 s ", 10),
    ],
)
def test_durations_every_grafana_unit(text, seconds):
    """Every Grafana interval unit (ms s m h d w y) converts to seconds."""
    assert params.parse_duration("interval", text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "1M", "h", "-1h", "1 hour", ""])
def test_duration_errors_name_the_argument(text):
    """A malformed duration is a 400 naming the argument and the units."""
    with pytest.raises(WebError) as err:
        params.parse_duration("interval", text)
    assert err.value.status == 400 and "'interval'" in err.value.message
    assert "ms s m h d w y" in err.value.message


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1700000000", 1700000000.0),
        ("1700000000.25", 1700000000.25),
        (1700000000, 1700000000.0),
        ("1700000000000", 1700000000.0),  # milliseconds (Grafana ${__from})
        ("0", NOW),
        ("-3600", NOW - 3600),
        ("now", NOW),
        ("now-15m", NOW - 900),
        ("now-7d", NOW - 7 * 86400),
        ("-7d", NOW - 7 * 86400),
        ("-15m", NOW - 900),
        ("2023-11-14T22:13:20Z", 1700000000.0),
        ("2023-11-14T22:13:20.500Z", 1700000000.5),
        ("2023-11-14T22:13:20", 1700000000.0),  # no zone: UTC
        ("2023-11-15T00:13:20+02:00", 1700000000.0),
    ],
)
def test_time_forms(text, expected):
    """UNIX seconds, milliseconds, <= 0 relative, now-<duration>, -<duration> and ISO 8601 all parse."""
    assert params.parse_time("start", text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["soon", "2023-13-01", "nan", "inf", "now+1h", "-7x", "-d", True])
def test_time_errors(text):
    """A malformed time is a 400 naming the argument."""
    with pytest.raises(WebError) as err:
        params.parse_time("start", text, NOW)
    assert err.value.status == 400 and "'start'" in err.value.message


def test_range_defaults_and_order():
    """start defaults to an hour ago, end to now; end before start is refused."""
    assert params.parse_range(None, None, NOW) == (NOW - 3600, NOW)
    with pytest.raises(WebError) as err:
        params.parse_range("200", "100", NOW)
    assert "'end'" in err.value.message


def test_data_query_validation():
    """/api/data arguments: each error names its argument; good ones round-trip."""
    q = params.parse_data_query(
        {"node": "n1", "fields": "a, b,a", "start": "-60", "min_stride": "1m", "method": "minmax", "format": "CSV"}, NOW
    )
    assert (q.node, q.fields, q.start, q.end, q.min_stride, q.method, q.format) == (
        "n1",
        ["a", "b"],
        NOW - 60,
        NOW,
        60.0,
        "minmax",
        "csv",
    )
    assert params.parse_data_query({"node": "n", "fields": "a", "min_stride": "0"}).min_stride is None
    cases = [
        ({"fields": "a"}, "'node'"),
        ({"node": "a.b", "fields": "a"}, "'node'"),
        ({"node": "n"}, "'fields'"),
        ({"node": "n", "fields": "a", "min_stride": "-1"}, "'min_stride'"),
        ({"node": "n", "fields": "a", "min_stride": "1e11"}, "'min_stride'"),
        ({"node": "n", "fields": "a", "min_stride": "5", "method": "median"}, "'method'"),
        ({"node": "n", "fields": "a", "method": "max"}, "'method'"),
        ({"node": "n", "fields": "a", "format": "xml"}, "'format'"),
        ({"node": "n", "fields": ",".join(f"f{i}" for i in range(65))}, "limit is 64"),
    ]
    for args, needle in cases:
        with pytest.raises(WebError) as err:
            params.parse_data_query(args, NOW)
        assert err.value.status == 400 and needle in err.value.message, args


def test_budget_suggests_a_stride_that_fits():
    """Too many bins is a 413 whose min_stride, when used, fits the limit."""
    with pytest.raises(WebError) as err:
        params.check_budget(86400 * 365, 1.0, 4, "minmax", 1_000_000)
    e = err.value
    assert e.status == 413 and e.error == "too_much_data" and "min_stride >=" in e.message
    params.check_budget(86400 * 365, e.body()["min_stride"], 4, "minmax", 1_000_000)
    params.check_budget(86400, None, 4, None, 10)  # no stride: checked on the answer


def grafana_body(**kw):
    """A /query body as Grafana's SimpleJSON datasource sends it."""
    body = {
        "app": "dashboard",
        "requestId": "Q100",
        "timezone": "browser",
        "panelId": 2,
        "dashboardId": None,
        "range": {
            "from": "2023-11-14T22:13:20.000Z",
            "to": "2023-11-14T23:13:20.000Z",
            "raw": {"from": "now-1h", "to": "now"},
        },
        "timeInfo": "",
        "interval": "2s",
        "intervalMs": 2000,
        "maxDataPoints": 1800,
        "targets": [
            {
                "target": "wx::temperature",
                "refId": "A",
                "type": "timeserie",
                "datasource": {"type": "grafana-simple-json-datasource", "uid": "x"},
            },
            {"target": "wx::humidity", "refId": "B", "type": "table"},
            {"target": "cryo::stage_temp", "refId": "C", "hide": True},
        ],
        "scopedVars": {},
        "startTime": 1700003600000,
        "rangeRaw": {"from": "now-1h", "to": "now"},
        "adhocFilters": [],
    }
    body.update(kw)
    return body


def test_grafana_query_parsing():
    """Range, targets and min_stride (coarser of intervalMs and range/maxDataPoints)."""
    q = grafana.parse_query(grafana_body())
    assert (q.start, q.end) == (1700000000.0, 1700003600.0)
    assert q.min_stride == pytest.approx(2.0)  # 2 s > 3600/1800
    assert [(t.node, t.field, t.kind) for t in q.targets] == [
        ("wx", "temperature", "timeserie"),
        ("wx", "humidity", "table"),
    ]
    assert q.by_node() == {("wx", None): ["temperature", "humidity"]}
    q = grafana.parse_query(grafana_body(intervalMs=100, maxDataPoints=100))
    assert q.min_stride == pytest.approx(36.0)
    q = grafana.parse_query(grafana_body(intervalMs=None, interval="1w", maxDataPoints=None))
    assert q.min_stride == 7 * 86400
    q = grafana.parse_query(
        {
            "range": {"from": "now-1h", "to": "now"},
            "targets": [{"target": "bad target"}, {"target": "n::f", "data": {"method": "max"}}],
        }
    )
    assert q.min_stride is None and [t.method for t in q.targets] == ["max"]
    assert "node::field" in q.invalid["bad target"]


@pytest.mark.parametrize(
    "body,needle",
    [
        ([], "JSON object"),
        ({"targets": []}, "'range'"),
        ({"range": {"from": "x", "to": "now"}}, "range.from"),
        ({"range": {"from": "now", "to": "now-1h"}}, "range.to"),
        (grafana_body(intervalMs="2s"), "intervalMs"),
        (grafana_body(maxDataPoints=0), "maxDataPoints"),
        (grafana_body(targets="a"), "'targets'"),
        (grafana_body(targets=[{"target": "a::b", "type": "graph"}]), ".type"),
    ],
)
def test_grafana_query_errors(body, needle):
    """A malformed /query body is a 400 naming the member."""
    with pytest.raises(WebError) as err:
        grafana.parse_query(body)
    assert err.value.status == 400 and needle in err.value.message


def test_grafana_replies():
    """timeserie datapoints are [value, ms] with NaN as null; tables and annotations."""
    t = np.array([1.0, 2.0, 3.0])
    v = np.array([1.5, math.nan, 2.5])
    assert grafana.timeserie("a::b", t, v) == {
        "target": "a::b",
        "datapoints": [[1.5, 1000.0], [None, 2000.0], [2.5, 3000.0]],
    }
    tab = grafana.table("a::b", t, v, "number")
    assert tab["columns"][0] == {"text": "time", "type": "time"}
    assert tab["rows"][1] == [2000.0, None]
    assert grafana.timeserie("x::y", t[:0], v[:0], "no node")["meta"] == {"error": "no node"}
    anns = grafana.annotations({"name": "a"}, "n", "s", t, np.array(["x", "x", "y"], dtype=object))
    assert [(a["time"], a["text"]) for a in anns] == [(1000.0, "s = x"), (3000.0, "s = y")]
    assert grafana.search(["n::Temp", "n::pressure", "m::temp2"], "TEMP") == ["m::temp2", "n::Temp"]
    assert grafana.search(["b::x", "a::y"], None) == ["a::y", "b::x"]


class _Q:
    node, start, end, min_stride, method = "n", 0.0, 10.0, None, None


def _result():
    return Result.coerce(
        {
            "data": {
                "a": np.array([1.0, math.nan, 3.0]),
                "s": np.array(["x", "y", "z"], dtype=object),
                "b": np.array([True, False]),
                "e": np.zeros(0),
            },
            "timeline": {
                "one": {"t": np.array([1.0, 2.0, 3.0]), "finalized_until": 3.0},
                "two": {"t": np.array([2.0, 4.0]), "finalized_until": None},
            },
            "field_timeline": {"a": "one", "s": "one", "b": "two"},
        }
    )


def test_csv_rows_merge_timelines():
    """CSV: one row per distinct time; empty cells for no sample or NaN; exact times."""
    q = _Q()
    q.fields = ["a", "b", "s", "e"]
    rows = list(csv.reader(io.StringIO(encoders.encode(encoders.CSV, _result(), q))))
    assert rows[0] == ["time", "t", "a", "b", "s", "e"]
    assert rows[1] == ["1970-01-01T00:00:01.000Z", "1.0", "1.0", "", "x", ""]
    assert rows[2] == ["1970-01-01T00:00:02.000Z", "2.0", "", "true", "y", ""]
    assert rows[4] == ["1970-01-01T00:00:04.000Z", "4.0", "", "false", "", ""]
    assert len(rows) == 5


def test_binary_frame_round_trip():
    """The binary frame decodes back to the same arrays, aligned for Float64Array."""
    frame = encoders.encode(encoders.FRAME, _result(), _Q())
    assert frame[:8] == encode.MAGIC
    head_len = int.from_bytes(frame[8:12], "little")
    assert (16 + head_len) % 8 == 0
    header, arrays = encode.read_binary(frame)
    np.testing.assert_array_equal(arrays["t:one"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(arrays["a"], [1.0, math.nan, 3.0])
    np.testing.assert_array_equal(arrays["b"], [1.0, 0.0])
    assert list(arrays["s"]) == ["x", "y", "z"] and len(arrays["e"]) == 0
    assert header["fields"]["b"]["timeline"] == "two" and header["node"] == "n"


def test_json_body_has_nulls_not_nan():
    """The JSON body is strict JSON: NaN becomes null."""
    import json

    body = json.dumps(encoders.encode(encoders.JSON, _result(), _Q()), allow_nan=False)
    assert json.loads(body)["data"]["a"] == [1.0, None, 3.0]


# -- live streams ---------------------------------------------------------------


def _events(chunks: list[bytes]) -> list[tuple[str, dict]]:
    """(event, payload) pairs of the SSE bytes written."""
    import json

    out = []
    for block in b"".join(chunks).decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def _sample(t0: float, n: int = 1) -> dict:
    ts = [t0 + i for i in range(n)]
    return {
        "data": {"x": [float(t) for t in ts], "on": [True] * n},
        "timeline": {"tl": {"t": ts, "finalized_until": ts[-1]}},
    }


def test_live_nodes_argument():
    """``nodes=a,b`` is the multiplexed form (repeats removed); ``node=`` the old one."""
    from sisock.web.live import parse_nodes

    assert parse_nodes({"nodes": "a,b,a"}) == (["a", "b"], True)
    assert parse_nodes({"node": "a"}) == (["a"], False)
    for args in ({"nodes": ","}, {}, {"nodes": "a,b c"}):
        with pytest.raises(WebError) as exc:
            parse_nodes(args)
        assert exc.value.status == 400 and "node" in exc.value.message


def test_live_stream_names_nodes_only_when_multiplexed():
    """Multiplexed ``data`` events carry ``node``; the single-node form is unchanged."""
    from sisock.web.live import LiveStream

    for multi in (True, False):
        out: list[bytes] = []
        s = LiveStream(out.append, ["a"], multi)
        s.emit("a", "data", _sample(10))
        [(event, doc)] = _events(out)
        assert event == "data"
        assert set(doc) == ({"node", "data", "timeline"} if multi else {"data", "timeline"})


def test_live_stream_stalled_reader_is_bounded():
    """While the connection is paused (reader stalls), samples are coalesced per node
    up to the cap, the oldest dropped and counted; on resume one merged event per
    node is written, then a ``dropped`` notice, and nothing else was buffered."""
    from sisock.web.live import LiveStream

    out: list[bytes] = []
    s = LiveStream(out.append, ["a", "b"], True, cap=50)
    s.pauseProducing()
    for i in range(10_000):
        s.emit("a", "data", _sample(1000 + 2 * i, 2))
        if i % 100 == 0:
            s.emit("b", "data", _sample(1000 + i))
            s.emit("b", "router", {"connected": i % 200 == 0})
        assert s.pending_samples() <= 2 * 50
    assert out == [] and s.total_dropped == 20_000 - 50 + 100 - 50
    s.resumeProducing()
    events = _events(out)
    data = {d["node"]: d for e, d in events if e == "data"}
    assert len([e for e, _ in events if e == "data"]) == 2
    a = data["a"]
    assert a["timeline"]["tl"]["t"] == list(range(1000 + 20_000 - 50, 1000 + 20_000))
    assert a["data"]["x"] == [float(t) for t in a["timeline"]["tl"]["t"]]
    assert a["data"]["on"] == [True] * 50
    assert [d for e, d in events if e == "router"] == [{"connected": False}]  # newest only
    dropped = {d["node"]: d["samples"] for e, d in events if e == "dropped"}
    assert dropped == {"a": 20_000 - 50, "b": 100 - 50}
    out.clear()
    s.emit("a", "data", _sample(99_999))  # flowing again: written at once
    assert [e for e, _ in _events(out)] == ["data"]


# -- saved views ------------------------------------------------------------------


def test_saved_views_round_trip(tmp_path):
    """Views are saved as files, listed for everyone by name, replaced by name, deleted."""
    from sisock.web.views import ViewStore

    store = ViewStore(tmp_path / "views")
    assert store.list() == []
    v = store.save({"name": "cryo week", "panels": [["a:x", "a:y"], ["b:s"]], "range": "7d", "extra": "dropped"})
    assert v["range"] == "7d" and v["live"] is True and "extra" not in v and v["saved_at"] > 0
    store.save({"name": "zoom: 2020", "panels": [["a:x"]], "range": None, "from": 10, "to": 20, "live": False})
    assert [d["name"] for d in store.list()] == ["cryo week", "zoom: 2020"]
    assert store.get("zoom: 2020")["from"] == 10.0
    store.save({"name": "cryo week", "panels": [["a:x"]], "range": "1d"})
    assert store.get("cryo week")["panels"] == [["a:x"]] and len(store.list()) == 2
    store.delete("cryo week")
    with pytest.raises(WebError) as exc:
        store.get("cryo week")
    assert exc.value.status == 404 and "cryo week" in exc.value.message
    assert not list((tmp_path / "views").glob("*.tmp"))


@pytest.mark.parametrize(
    "doc,needle",
    [
        ([], "JSON object"),
        ({"panels": []}, "'name'"),
        ({"name": "../etc", "panels": []}, "'name'"),
        ({"name": " x", "panels": []}, "'name'"),
        ({"name": "x" * 81, "panels": []}, "80"),
        ({"name": "x", "panels": "a:b"}, "'panels'"),
        ({"name": "x", "panels": [["nofield"]]}, "node:field"),
        ({"name": "x", "panels": [], "range": "2w"}, "'range'"),
        ({"name": "x", "panels": [], "range": None, "from": 5, "to": 1}, "'from'"),
        ({"name": "x", "panels": [], "range": "1h", "live": "yes"}, "'live'"),
    ],
)
def test_saved_view_errors_name_the_member(doc, needle):
    """A bad view is refused with a 400 naming what is wrong."""
    from sisock.web.views import check_view

    with pytest.raises(WebError) as exc:
        check_view(doc)
    assert exc.value.status == 400 and needle in exc.value.message


def test_node_too_much_advice_fits_http():
    """A node's too_much_data refusal becomes a 413 whose advice an HTTP caller can follow
    (no streamed binary reply), with the min_stride and limit the node sent."""
    from sisock.web.errors import too_much_from_node

    err = too_much_from_node("arch", {"min_stride": 2.5, "limit": 100000})
    assert err.status == 413 and err.error == "too_much_data"
    assert "min_stride >= 2.5" in err.message and "100000" in err.message
    assert "stream" not in err.message and "binary" not in err.message
