"""The pure half of the web bridge's operator routes: sessions, CSRF checks, error mapping."""

from __future__ import annotations

import pytest

from sisock.web import operator as op
from sisock.web.errors import WebError

pytestmark = pytest.mark.unit

BASE = "sisock"
GOOD = {"x-sisock-csrf": "tok", "content-type": "application/json", "origin": "http://127.0.0.1:8000"}


def test_sessions_expire_idle_and_absolute():
    now = [1000.0]
    store = op.SessionStore(clock=lambda: now[0])
    s = store.create("alice")
    assert len(s.sid) >= 40 and s.csrf != s.sid
    now[0] += op.IDLE - 1
    assert store.get(s.sid) is s  # a request restarts the idle clock
    now[0] += op.IDLE - 1
    assert store.get(s.sid) is s
    now[0] += op.IDLE
    assert store.get(s.sid) is None and store.expired() == [s] and not store.sessions
    t = store.create("bob")
    for _ in range(int(op.LIFETIME / (op.IDLE / 2)) + 1):
        now[0] += op.IDLE / 2
        store.get(t.sid)
    assert store.get(t.sid) is None  # the absolute lifetime holds
    assert store.get(None) is None and store.get("nope") is None


@pytest.mark.parametrize(
    "headers, error",
    [
        (GOOD, None),
        ({**GOOD, "x-sisock-csrf": "other"}, "forbidden"),
        ({k: v for k, v in GOOD.items() if k != "x-sisock-csrf"}, "forbidden"),
        ({**GOOD, "origin": "http://evil.example"}, "forbidden"),
        ({**GOOD, "origin": "null"}, "forbidden"),
        ({**GOOD, "content-type": "text/plain"}, "bad_argument"),
        ({k: v for k, v in GOOD.items() if k != "origin"}, None),
    ],
)
def test_csrf(headers, error):
    exc = op.csrf_error("POST", headers, "tok", "127.0.0.1:8000", False)
    assert (exc.error if exc else None) == error
    assert op.csrf_error("GET", {}, None, "127.0.0.1:8000", False) is None
    assert op.csrf_error("POST", GOOD, None, "127.0.0.1:8000", False).error == "forbidden"


@pytest.mark.parametrize("name, status", sorted(op.REFUSAL_STATUS.items()))
def test_refusals_map_to_http(name, status):
    exc = op.refusal(BASE, f"{BASE}.error.{name}", ("why",), {"request_id": "r1", "point": "p"}, "n")
    assert (exc.status, exc.error) == (status, name)
    assert exc.body() == {"error": name, "message": "why", "request_id": "r1", "point": "p"}


def test_router_errors_map_to_http():
    assert op.refusal(BASE, "wamp.error.no_such_procedure", (), {}, "n").status == 404
    assert op.refusal(BASE, "wamp.error.not_authorized", ("no",), {}, "n").status == 403
    assert op.refusal(BASE, f"{BASE}.error.internal", ("x",), {}, "n").status == 502


def test_parse_set():
    ok = {"point": "sp", "value": 1.5, "request_id": "0123456789", "reason": "r"}
    assert op.parse_set(ok) == {**ok, "dry_run": False}
    assert op.parse_set({**ok, "expected": 1.0, "dry_run": True})["expected"] == 1.0
    assert op.parse_set({**ok, "value": "x"})["value"] == "x"  # the node judges (and audits) it
    for bad in (
        {k: v for k, v in ok.items() if k != "value"},
        {**ok, "request_id": "1"},
        {**ok, "extra": 1},
        {**ok, "dry_run": "yes"},
        [],
        {**ok, "point": ""},
    ):
        with pytest.raises(WebError):
            op.parse_set(bad)


def test_last_values():
    reply = {
        "data": {"sp": [1.0, 2.0], "fast_ok": [True, False]},
        "timeline": {"fast": {"t": [10.0, 11.0]}},
        "field_timeline": {"sp": "fast"},
    }
    got = op.last_values(reply, ["sp", "gone"], {"sp": {"timeline": "fast"}})
    assert got["sp"] == {"value": None, "t": 11.0, "ok": False}  # a failed poll: no reading
    reply["data"]["fast_ok"] = [False, True]
    assert op.last_values(reply, ["sp"], {})["sp"] == {"value": 2.0, "t": 11.0, "ok": True}
    assert got["gone"] == {"value": None, "t": None, "ok": False}


def test_throttle_failed_signins():
    now = [0.0]
    t = op.Throttle(clock=lambda: now[0])
    for _ in range(op.MAX_FAILURES):
        t.check("1.2.3.4")
        t.failed("1.2.3.4")
    with pytest.raises(WebError) as info:
        t.check("1.2.3.4")
    assert info.value.status == 429
    t.check("5.6.7.8")  # another address is not held up
    now[0] += op.FAIL_WINDOW
    t.check("1.2.3.4")
