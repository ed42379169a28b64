"""``sisock web`` over HTTP, against the real router and real data nodes.

Bodies are as Grafana's SimpleJSON datasource and Grafana Infinity send
them; CSV/JSON/binary answers are checked value by value against the
node's own answer through :mod:`sisock.client`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import socket
import time
import urllib.parse

import numpy as np
import pytest

from conftest import free_port, http, wait_for, wait_port
from sisock.web.encode import BINARY_TYPE, read_binary

pytestmark = pytest.mark.timeout(180)


def get(demo, path, **params):
    """GET ``path`` with query ``params``; returns (status, headers, body)."""
    q = ("?" + urllib.parse.urlencode(params)) if params else ""
    return http("GET", demo.url + path + q)


def error_of(status_headers_body):
    """The JSON error body, checking its shape."""
    status, headers, body = status_headers_body
    assert headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert set(doc) >= {"error", "message"} and doc["message"]
    assert "Traceback" not in doc["message"]
    return status, doc


def window(client, node="webarch", field="stage_temp", hours=3):
    """An absolute range ending at the node's newest sample of ``field``."""
    r = client.get_data(node, [field], -86400 * 3, 0, min_stride=3600, method="last")
    # the last bin's stamp is its centre, and summary levels round the stride up (to
    # 3712 s here): one whole rounded bin before the stamp is before the newest sample
    last_hour = float(max(tl.t[-1] for tl in r.timelines.values())) - 2 * 3600
    raw = client.get_data(node, [field], last_hour, 0)
    end = float(max(tl.t[-1] for tl in raw.timelines.values()))
    return end - hours * 3600, end


def test_health_and_dashboard(web_demo):
    """GET / is Grafana's 200 health check; a browser asking for HTML gets the dashboard."""
    status, headers, body = http("GET", web_demo.url + "/", headers={"Accept": "application/json, text/plain, */*"})
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, headers, body = http("GET", web_demo.url + "/", headers={"Accept": "text/html"})
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"assets/app.js" in body
    status, headers, body = http("GET", web_demo.url + "/assets/app.js")
    assert status == 200 and "javascript" in headers["content-type"] and len(body) > 10_000
    status, doc = error_of(http("GET", web_demo.url + "/assets/../../setup.py"))
    assert status == 404


def test_nodes_and_fields(web_demo, client):
    """/api/nodes lists the hub's nodes; /api/nodes/N/fields is the node's get_fields."""
    status, _, body = get(web_demo, "/api/nodes")
    nodes = {n["name"]: n["description"] for n in json.loads(body)}
    assert status == 200 and {"webarch", "websens", "webwx"} <= set(nodes)
    assert nodes["webwx"] == "Weather station (text files)"
    status, _, body = get(web_demo, "/api/nodes/webarch/fields", start="-172800", end="0")
    doc = json.loads(body)
    assert status == 200
    assert doc["field"]["stage_temp"] == {
        "description": "cold stage temperature",
        "timeline": "cryo",
        "type": "number",
        "units": "K",
    }
    assert doc["field"]["cryo_state"]["type"] == "string"
    assert "stage_temp" in doc["timeline"]["cryo"]["field"]
    field, _ = client.fields("webarch", doc["start"], doc["end"])
    assert field == doc["field"]
    status, _, body = get(web_demo, "/api/nodes/webarch/fields")  # no range: the last day
    recent = json.loads(body)
    assert status == 200 and recent["field"]["stage_temp"]["units"] == "K"
    assert recent["end"] - recent["start"] == pytest.approx(86400, abs=5)
    status, err = error_of(get(web_demo, "/api/nodes/nosuchnode/fields"))
    assert status == 404 and err["error"] == "not_found" and "nosuchnode" in err["message"]


def csv_rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode())))


@pytest.mark.parametrize("stride,method", [(None, None), (120.0, "minmax"), (600.0, "mean")])
def test_csv_matches_node(web_demo, client, stride, method):
    """CSV of two timelines (number, bool, string) equals the node's own answer value by value."""
    start, end = window(client)
    fields = ["stage_temp", "compressor_on", "cryo_state", "outside_temp"]
    params = {"node": "webarch", "fields": ",".join(fields), "start": repr(start), "end": repr(end), "format": "csv"}
    if stride:
        params.update(min_stride=repr(stride), method=method)
    status, headers, body = get(web_demo, "/api/data", **params)
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert "attachment" in headers["content-disposition"]
    rows = csv_rows(body)
    assert rows[0] == ["time", "t", *fields]
    by_time = {float(r[1]): r for r in rows[1:]}
    assert len(by_time) == len(rows) - 1

    ref = client.get_data("webarch", fields, start, end, min_stride=stride, method=method)
    cryo, weather = ref.timelines["cryo"].t, ref.timelines["weather"].t
    assert len(cryo) > 10 and len(weather) > 10
    assert len(rows) - 1 == len(np.union1d(cryo, weather))
    for f, t in (("stage_temp", cryo), ("compressor_on", cryo), ("cryo_state", cryo), ("outside_temp", weather)):
        col = fields.index(f) + 2
        for ti, v in zip(t.tolist(), ref.data[f].tolist()):
            cell = by_time[ti][col]
            as_bool = f == "compressor_on" and stride and method != "mean"  # bins of 0/1
            if isinstance(v, bool) or as_bool:
                assert cell == ("true" if v else "false")
            elif isinstance(v, float):
                assert (cell == "" and math.isnan(v)) or float(cell) == v
            else:
                assert cell == str(v)
    row = by_time[float(cryo[0])]
    assert (
        row[0] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(cryo[0])) + f".{int(round((cryo[0] % 1) * 1000)):03d}Z"
    )


def test_json_and_binary_match_node(web_demo, client):
    """format=json and format=binary carry the node's arrays exactly (NaN as null in JSON)."""
    start, end = window(client, hours=12)
    fields = ["humidity", "stage_temp", "cryo_state"]
    common = {
        "node": "webarch",
        "fields": ",".join(fields),
        "start": repr(start),
        "end": repr(end),
        "min_stride": "60",
        "method": "minmax",
    }
    ref = client.get_data("webarch", fields, start, end, min_stride=60, method="minmax")
    status, headers, body = get(web_demo, "/api/data", **common)
    doc = json.loads(body)
    assert status == 200 and doc["field_timeline"] == {
        "humidity": "weather",
        "stage_temp": "cryo",
        "cryo_state": "cryo",
    }
    assert doc["min_stride"] == 60 and doc["method"] == "minmax"
    h = np.array([np.nan if v is None else v for v in doc["data"]["humidity"]])
    np.testing.assert_array_equal(h, ref.data["humidity"])
    raw = json.loads(
        get(web_demo, "/api/data", node="webarch", fields="humidity", start=repr(start), end=repr(end))[2]
    )["data"]["humidity"]
    assert None in raw, "raw humidity has NaN (generated): it must travel as null"
    np.testing.assert_array_equal(
        np.array([np.nan if v is None else v for v in raw]),
        client.get_data("webarch", ["humidity"], start, end).data["humidity"],
    )
    np.testing.assert_array_equal(doc["timeline"]["cryo"]["t"], ref.timelines["cryo"].t)

    status, headers, frame = get(web_demo, "/api/data", **common, format="binary")
    assert status == 200 and headers["content-type"] == BINARY_TYPE
    header, arrays = read_binary(frame)
    np.testing.assert_array_equal(arrays["humidity"], ref.data["humidity"])
    np.testing.assert_array_equal(arrays["stage_temp"], ref.data["stage_temp"])
    np.testing.assert_array_equal(arrays["t:cryo"], ref.timelines["cryo"].t)
    assert list(arrays["cryo_state"]) == list(ref.data["cryo_state"])
    assert header["fields"]["humidity"]["timeline"] == "weather"


def test_time_forms_give_the_same_answer(web_demo, client):
    """UNIX seconds, milliseconds (Infinity's ${__from}) and ISO 8601 select the same samples."""
    start, end = window(client, hours=1)
    start, end = math.floor(start), math.floor(end)

    def iso(t):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    answers = []
    for s, e in ((start, end), (start * 1000, end * 1000), (iso(start), iso(end))):
        status, _, body = get(
            web_demo, "/api/data", node="webarch", fields="stage_temp", start=str(s), end=str(e), format="csv"
        )
        assert status == 200
        answers.append(body)
    assert answers[0] == answers[1] == answers[2] and len(csv_rows(answers[0])) > 3000


def grafana_query(targets, start, end, interval_ms=60000, max_points=500):
    """A /query body exactly as the SimpleJSON datasource builds it."""

    def iso(t):
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))

    return {
        "app": "dashboard",
        "requestId": "Q101",
        "timezone": "browser",
        "panelId": 2,
        "range": {"from": iso(start), "to": iso(end), "raw": {"from": "now-6h", "to": "now"}},
        "rangeRaw": {"from": "now-6h", "to": "now"},
        "interval": "1m",
        "intervalMs": interval_ms,
        "maxDataPoints": max_points,
        "targets": targets,
        "adhocFilters": [],
        "scopedVars": {},
        "startTime": int(time.time() * 1000),
    }


def test_grafana_query_timeserie_and_table(web_demo, client):
    """/query: datapoints [[v, ms]] equal the node's answer at the derived min_stride;
    an unknown node is an empty series with a message, not a failure."""
    start, end = map(float, map(math.floor, window(client, hours=6)))
    body = grafana_query(
        [
            {"target": "webarch::stage_temp", "refId": "A", "type": "timeserie"},
            {"target": "webwx::temperature", "refId": "B", "type": "timeserie"},
            {"target": "nonode::x", "refId": "C", "type": "timeserie"},
            {"target": "webarch::cryo_state", "refId": "D", "type": "table"},
        ],
        start,
        end,
        interval_ms=30000,
        max_points=240,
    )
    status, _, raw = http("POST", web_demo.url + "/query", body)
    assert status == 200
    out = json.loads(raw)
    assert [o.get("target") for o in out[:3]] == ["webarch::stage_temp", "webwx::temperature", "nonode::x"]
    stride = max(30.0, (end - start) / 240)  # coarser of intervalMs and range/maxDataPoints
    ref = client.get_data("webarch", ["stage_temp", "cryo_state"], start, end, min_stride=stride)
    pts = out[0]["datapoints"]
    assert [p[0] for p in pts] == ref.data["stage_temp"].tolist()
    assert [p[1] for p in pts] == (ref.timelines["cryo"].t * 1000).tolist()
    assert len(out[1]["datapoints"]) > 0
    assert out[2]["datapoints"] == [] and "nonode" in out[2]["meta"]["error"]
    table = out[3]
    assert table["type"] == "table" and table["columns"][1] == {"text": "webarch::cryo_state", "type": "string"}
    assert [r[1] for r in table["rows"]] == ref.data["cryo_state"].tolist()


def test_grafana_search_annotations_tags(web_demo, client):
    """/search filters node::field by the typed text; /annotations marks state changes;
    /tag-keys and /tag-values offer the node names."""
    status, _, raw = http("POST", web_demo.url + "/search", {"target": "stage"})
    found = json.loads(raw)
    assert status == 200 and "webarch::stage_temp" in found
    assert all("stage" in t.lower() for t in found)
    status, _, raw = http("POST", web_demo.url + "/search", {"type": "timeserie", "target": ""})
    every = json.loads(raw)
    assert {"webarch::cryo_state", "webwx::humidity", "websens::cpu_percent"} <= set(every)

    start, end = window(client, field="cryo_state", hours=24)

    def iso(t):
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))

    ann = {"name": "state", "datasource": "sisock", "enable": True, "iconColor": "red", "query": "webarch::cryo_state"}
    status, _, raw = http(
        "POST",
        web_demo.url + "/annotations",
        {"range": {"from": iso(start), "to": iso(end)}, "annotation": ann, "rangeRaw": {"from": "now-1d", "to": "now"}},
    )
    marks = json.loads(raw)
    ref = client.get_data("webarch", ["cryo_state"], iso(start) and math.floor(start), math.floor(end)).data[
        "cryo_state"
    ]
    changes = 1 + int(np.sum(ref[1:] != ref[:-1]))
    assert status == 200 and len(marks) == changes >= 2
    assert marks[0]["annotation"] == ann and marks[0]["text"].startswith("cryo_state = ")

    status, _, raw = http("POST", web_demo.url + "/tag-keys", {})
    assert json.loads(raw) == [{"type": "string", "text": "node"}]
    status, _, raw = http("POST", web_demo.url + "/tag-values", {"key": "node"})
    assert {"webarch", "websens"} <= {v["text"] for v in json.loads(raw)}


def test_infinity_style_csv_and_json(web_demo):
    """Grafana Infinity: a GET URL with ${__from}/${__to} in ms, CSV or JSON back."""
    now_ms = int(time.time() * 1000)
    status, headers, body = http(
        "GET",
        web_demo.url + "/api/data?node=websens&fields=cpu_percent,"
        f"mem_percent&start={now_ms - 600_000}&end={now_ms}&format=csv",
        headers={"Accept": "text/csv", "User-Agent": "Grafana"},
    )
    rows = csv_rows(body)
    assert status == 200 and rows[0] == ["time", "t", "cpu_percent", "mem_percent"]
    assert len(rows) > 1 and rows[1][0].endswith("Z") and float(rows[1][3]) > 0


def test_live_events_relay_the_node(web_demo):
    """/api/live is an SSE stream of the node's live samples (get_data shape)."""
    with socket.create_connection(("127.0.0.1", web_demo.port), timeout=30) as s:
        s.sendall(b"GET /api/live?node=websens HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        buf = b""
        deadline = time.monotonic() + 30
        while buf.count(b"event: data") < 3 and time.monotonic() < deadline:
            buf += s.recv(65536)
    head, _, stream = buf.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0] and b"text/event-stream" in head
    events = [e for e in stream.decode(errors="replace").split("\n\n") if "event: data" in e]
    assert len(events) >= 3
    line = [x for x in events[0].splitlines() if x.startswith("data: ")][-1]
    doc = json.loads(line[6:])
    assert set(doc) == {"data", "timeline"} and "cpu_percent" in doc["data"]
    assert len(doc["timeline"]["sensors"]["t"]) == len(doc["data"]["cpu_percent"]) >= 1


def test_live_stream_multiplexes_nodes(web_demo):
    """/api/live?nodes=a,b is one SSE stream over several nodes: data events name
    their node, and a node the hub does not list gets a ``missing`` event."""
    with socket.create_connection(("127.0.0.1", web_demo.port), timeout=30) as s:
        s.sendall(
            b"GET /api/live?nodes=webarch,websens,ghostnode HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Accept: text/event-stream\r\n\r\n"
        )
        buf = b""
        deadline = time.monotonic() + 30
        while buf.count(b"event: data") < 3 and time.monotonic() < deadline:
            buf += s.recv(65536)
    head, _, stream = buf.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0] and b"text/event-stream" in head
    events = []
    for block in stream.decode(errors="replace").split("\n\n"):
        lines = [x for x in block.splitlines() if not x.startswith(":")]
        name = [x[7:] for x in lines if x.startswith("event: ")]
        data = [x[6:] for x in lines if x.startswith("data: ")]
        if name and data:
            events.append((name[0], json.loads(data[0])))
    assert events[0] == ("hello", {"nodes": ["webarch", "websens", "ghostnode"], "connected": True})
    assert ("missing", {"name": "ghostnode"}) in events
    data = [d for e, d in events if e == "data"]
    assert len(data) >= 3 and {d["node"] for d in data} == {"websens"}
    assert set(data[0]) == {"node", "data", "timeline"} and "cpu_percent" in data[0]["data"]


def test_error_paths(web_demo):
    """Every error is JSON {error, message} with the right status, and the bridge keeps serving."""
    cases = [
        (("GET", "/api/data?fields=a"), 400, "bad_argument", "'node'"),
        (("GET", "/api/data?node=webarch"), 400, "bad_argument", "'fields'"),
        (("GET", "/api/data?node=webarch&fields=stage_temp&start=soon"), 400, "bad_argument", "'start'"),
        (("GET", "/api/data?node=webarch&fields=stage_temp&start=100&end=50"), 400, "bad_argument", "'end'"),
        (("GET", "/api/data?node=webarch&fields=stage_temp&min_stride=-5"), 400, "bad_argument", "'min_stride'"),
        (
            ("GET", "/api/data?node=webarch&fields=stage_temp&min_stride=5&method=median"),
            400,
            "bad_argument",
            "'method'",
        ),
        (("GET", "/api/data?node=webarch&fields=stage_temp&format=xml"), 400, "bad_argument", "'format'"),
        (("GET", "/api/data?node=nonode&fields=a"), 404, "not_found", "nonode"),
        (("GET", "/api/live?node=nonode"), 404, "not_found", "nonode"),
        (("GET", "/api/live?nodes=,"), 400, "bad_argument", "nodes"),
        (("GET", "/nowhere"), 404, "not_found", "/nowhere"),
        (("DELETE", "/api/data"), 405, "method_not_allowed", "GET"),
        (("GET", "/query"), 405, "method_not_allowed", "POST"),
        (
            ("GET", "/api/data?node=webarch&fields=stage_temp&start=1&min_stride=0.001"),
            413,
            "too_much_data",
            "min_stride >=",
        ),
    ]
    for (method, path), status, error, needle in cases:
        got, doc = error_of(http(method, web_demo.url + path))
        assert (got, doc["error"]) == (status, error), (path, doc)
        assert needle in doc["message"], (path, doc)
    got, doc = error_of(http("GET", web_demo.url + "/api/data?node=webarch&fields=stage_temp&start=1&min_stride=0.001"))
    assert doc["min_stride"] > 0.001
    got, doc = error_of(http("POST", web_demo.url + "/query", b"{not json"))
    assert got == 400 and "JSON" in doc["message"]
    got, doc = error_of(http("POST", web_demo.url + "/query", {"targets": []}))
    assert got == 400 and "'range'" in doc["message"]
    got, doc = error_of(http("POST", web_demo.url + "/query", b"[" + b" " * (1 << 20) + b"]"))
    assert got == 413 and doc["error"] == "body_too_large"
    got, doc = error_of(http("POST", web_demo.url + "/tag-values", {"key": "room"}))
    assert got == 400 and "'key'" in doc["message"]
    assert http("GET", web_demo.url + "/")[0] == 200


def test_token_cors_and_too_much_data_limit(stack, procs):
    """--token guards every endpoint; CORS only for the configured origin;
    --max-values refuses a big answer with a 413 and a min_stride that fits."""
    port = free_port()
    web = procs(
        "web-guarded",
        "web",
        "--port",
        str(port),
        "--token",
        "s3cret-test-token",
        "--cors-origin",
        "http://grafana.example",
        "--max-values",
        "1000",
    )
    wait_port(port, 30, web.proc)
    url = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: http("GET", url + "/", headers={"Authorization": "Bearer s3cret-test-token"})[0] == 200,
        30,
        "guarded bridge never connected",
    )
    for path in ("/", "/api/nodes", "/api/data?node=webarch&fields=a", "/assets/app.js"):
        got, doc = error_of(http("GET", url + path))
        assert got == 401 and doc["error"] == "unauthorized" and "token" in doc["message"]
    got, doc = error_of(http("POST", url + "/search", {}, headers={"Authorization": "Bearer wrong"}))
    assert got == 401
    status, headers, _ = http("GET", url + "/api/nodes?token=s3cret-test-token")
    assert status == 200 and "sisock_token=s3cret-test-token" in headers.get("set-cookie", "")
    assert "HttpOnly" in headers["set-cookie"]
    status, _, _ = http("GET", url + "/api/nodes", headers={"Cookie": "sisock_token=s3cret-test-token"})
    assert status == 200

    status, headers, _ = http(
        "OPTIONS", url + "/query", headers={"Origin": "http://grafana.example", "Access-Control-Request-Method": "POST"}
    )
    assert status == 204 and headers["access-control-allow-origin"] == "http://grafana.example"
    assert "Authorization" in headers["access-control-allow-headers"]
    status, headers, _ = http(
        "GET",
        url + "/api/nodes",
        headers={"Origin": "http://evil.example", "Authorization": "Bearer s3cret-test-token"},
    )
    assert status == 200 and "access-control-allow-origin" not in headers

    auth = {"Authorization": "Bearer s3cret-test-token"}
    got, doc = error_of(http("GET", url + "/api/data?node=webarch&fields=stage_temp&start=-7200", headers=auth))
    assert got == 413 and doc["error"] == "too_much_data" and doc["limit"] == 1000
    status, _, body = http(
        "GET",
        url + f"/api/data?node=webarch&fields=stage_temp&start=-7200&min_stride={doc['min_stride']}&format=csv",
        headers=auth,
    )
    assert status == 200 and 1 < len(csv_rows(body)) <= 1001


def test_cors_off_by_default(web_demo):
    """Without --cors-origin no Access-Control header is ever sent."""
    status, headers, _ = http("GET", web_demo.url + "/api/nodes", headers={"Origin": "http://grafana.example"})
    assert status == 200 and "access-control-allow-origin" not in headers


def test_router_away_then_back(stack, procs):
    """No router: 503 JSON everywhere; the bridge reconnects by itself when the router comes back."""
    dead = free_port()
    port = free_port()
    web = procs("web-norouter", "web", "--port", str(port), "--router-url", f"ws://127.0.0.1:{dead}/ws")
    wait_port(port, 30, web.proc)
    url = f"http://127.0.0.1:{port}"
    for method, path in (
        ("GET", "/"),
        ("GET", "/api/nodes"),
        ("POST", "/search"),
        ("GET", "/api/data?node=webarch&fields=a"),
        ("GET", "/api/live?node=x"),
    ):
        got, doc = error_of(http(method, url + path, {} if method == "POST" else None))
        assert got == 503 and doc["error"] == "router_unavailable", path
        assert f"127.0.0.1:{dead}" in doc["message"] or "router" in doc["message"]

    port2 = free_port()
    web2 = procs("web-restart", "web", "--port", str(port2))
    wait_port(port2, 30, web2.proc)
    url2 = f"http://127.0.0.1:{port2}"
    wait_for(lambda: http("GET", url2 + "/")[0] == 200, 30, "bridge never connected")
    stack.restart_router()
    wait_for(
        lambda: http("GET", url2 + "/", timeout=5)[0] == 200, 30, "bridge did not come back after the router restart"
    )
    wait_for(
        lambda: (
            "webarch"
            in {
                n["name"]
                for n in json.loads(http("GET", url2 + "/api/nodes", timeout=5)[2] or b"[]")
                if isinstance(n, dict)
            }
        ),
        30,
        "nodes not listed again after the router restart",
    )


def test_saved_views_over_http(web_demo):
    """POST /api/views saves a named view for everyone, GET lists and returns it
    (the export format), a second POST replaces it, DELETE removes it; bad views
    get 400 naming the member, unknown names 404."""
    doc = {"name": "http view", "panels": [["webarch:stage_temp"], ["webwx:temperature"]], "range": "7d", "live": True}
    status, _, body = http("POST", web_demo.url + "/api/views", doc)
    assert status == 200 and json.loads(body)["saved_at"] > 0
    status, _, body = http("GET", web_demo.url + "/api/views")
    assert {"name": "http view", "panels": 2} in [
        {k: v for k, v in d.items() if k != "saved_at"} for d in json.loads(body)
    ]
    status, _, body = http("GET", web_demo.url + "/api/views/http%20view")
    got = json.loads(body)
    assert status == 200 and got["panels"] == doc["panels"] and got["range"] == "7d"
    http("POST", web_demo.url + "/api/views", {**doc, "panels": [["webarch:az"]]})
    _, _, body = http("GET", web_demo.url + "/api/views/http%20view")
    assert json.loads(body)["panels"] == [["webarch:az"]]
    status, _, _ = http("DELETE", web_demo.url + "/api/views/http%20view")
    assert status == 200
    got, err = error_of(http("GET", web_demo.url + "/api/views/http%20view"))
    assert (got, err["error"]) == (404, "not_found") and "http view" in err["message"]
    got, err = error_of(http("POST", web_demo.url + "/api/views", {"name": "x", "panels": [["bad"]]}))
    assert (got, err["error"]) == (400, "bad_argument") and "node:field" in err["message"]
    got, err = error_of(http("PUT", web_demo.url + "/api/views"))
    assert got == 405


def test_rest_consistency(web_demo, client):
    """/api/data: an unknown field is a 404 naming it (and the node's fields); downsampled
    bool fields (other than mean) are true/false in CSV and JSON."""
    start, end = window(client, hours=3)
    status, doc = error_of(
        get(web_demo, "/api/data", node="webarch", fields="stage_temp,nope", start=start, end=end, min_stride=60)
    )
    assert status == 404 and doc["error"] == "unknown_field" and "nope" in doc["message"]
    assert doc["fields"] == ["nope"] and "stage_temp" in doc["message"]
    status, _, body = get(
        web_demo,
        "/api/data",
        node="webarch",
        fields="compressor_on",
        start=start,
        end=end,
        min_stride=600,
        method="minmax",
        format="csv",
    )
    assert status == 200
    cells = [line.split(",")[2] for line in body.decode().splitlines() if line and not line.startswith(("#", "time"))]
    assert cells and set(cells) <= {"true", "false"}, cells[:5]
    status, _, body = get(
        web_demo,
        "/api/data",
        node="webarch",
        fields="compressor_on",
        start=start,
        end=end,
        min_stride=600,
        method="minmax",
    )
    values = json.loads(body)["data"]["compressor_on"]
    assert values and all(isinstance(v, bool) for v in values)


def test_saved_views_refuse_cross_site_writes(web_demo):
    """A page on another origin cannot save, replace or delete a shared view: a "simple"
    text/plain POST (no CORS preflight) and a JSON POST naming a foreign Origin are both
    refused with 403, and nothing is stored; the dashboard's own JSON POST still works."""
    doc = {"name": "csrf target", "panels": [["webarch:stage_temp"]], "range": "1h"}
    assert http("POST", web_demo.url + "/api/views", doc)[0] == 200
    forged = {"name": "csrf target", "panels": [["webwx:humidity"]], "range": "1y"}
    got, err = error_of(
        http(
            "POST",
            web_demo.url + "/api/views",
            json.dumps(forged).encode(),
            headers={"Content-Type": "text/plain", "Origin": "http://localhost:18099"},
        )
    )
    assert (got, err["error"]) == (403, "forbidden")
    got, err = error_of(http("POST", web_demo.url + "/api/views", forged, headers={"Origin": "http://evil.example"}))
    assert got == 403 and "evil.example" in err["message"]
    got, _ = error_of(
        http("DELETE", web_demo.url + "/api/views/csrf%20target", headers={"Origin": "http://evil.example"})
    )
    assert got == 403
    status, _, body = http("GET", web_demo.url + "/api/views/csrf%20target")
    assert status == 200 and json.loads(body)["panels"] == doc["panels"]  # untouched
    own = web_demo.url.split("/")[2]
    assert (
        http("POST", web_demo.url + "/api/views", {**doc, "range": "1d"}, headers={"Origin": f"http://{own}"})[0] == 200
    )
