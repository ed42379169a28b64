"""Pure parts of the web bridge's protections: Host allowlist, token redaction
and redirect, cookie attributes, /query caps and whole-answer budget, the
fair limit on node calls, and sliced JSON encoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from twisted.internet.defer import Deferred, ensureDeferred

from sisock.web import grafana, guard
from sisock.web.errors import WebError
from sisock.web.limits import FairLimiter
from sisock.web.params import check_total_budget


@pytest.mark.parametrize(
    "host,ok",
    [
        ("localhost", True),
        ("localhost:8000", True),
        ("LOCALHOST:1", True),
        ("localhost.", True),
        ("127.0.0.1:8000", True),
        ("[::1]:8000", True),
        ("[::1]", True),
        ("sisock.example.org", True),
        ("sisock.example.org:443", True),
        ("attacker.example", False),
        ("attacker.example:8000", False),
        ("127.0.0.1.attacker.example", False),
        ("localhost.attacker.example", False),
        ("", False),
        (None, False),
        ("[::1", False),
        ("localhost:80x", False),
        ("local host", False),
        ("10.0.0.5:8000", True),
        ("[2001:db8::1]:80", True),
        ("10.0.0.5.attacker.example", False),
    ],
)
def test_host_allowlist(host, ok):
    """Loopback names, IP addresses and configured names, with any port; nothing else."""
    assert guard.host_allowed(host, guard.host_names(["sisock.example.org"])) is ok


def test_host_names_and_wildcard():
    """Configured names are normalised; '*' turns the check off; a URL is refused."""
    assert guard.host_names(["Sisock.Example.org:443", "[::2]"]) == {"sisock.example.org", "::2"}
    assert guard.host_allowed("anything.example", guard.host_names(["*"]))
    with pytest.raises(ValueError):
        guard.host_names(["https://sisock.example.org/"])


def test_head_error_order_and_limits():
    """Host first (421), then the token (401), then the declared length (413)."""
    policy = guard.Policy(token="t0k", max_body=100)
    ok = {"host": "127.0.0.1:1", "authorization": "Bearer t0k"}
    assert guard.head_error(policy, ok, b"", None, 100) is None
    assert guard.head_error(policy, {**ok, "host": "evil.example"}, b"", None, 10).status == 421
    assert guard.head_error(policy, {"host": "localhost"}, b"", None, 10).status == 401
    assert guard.head_error(policy, {"host": "localhost"}, b"a=1&token=t0k", None, 10) is None
    assert guard.head_error(policy, {"host": "localhost"}, b"", "t0k", None) is None
    assert guard.head_error(policy, ok, b"", None, 101).status == 413


def test_redact_and_redirect():
    """Tokens never survive in a log line; the redirect drops only the token."""
    line = '"127.0.0.1" - - [x] "GET /?panels=a:b&token=s3cret HTTP/1.1" 200 5 "http://h/?token=s3cret&x=1" "ua"'
    out = guard.redact(line)
    assert "s3cret" not in out and out.count("token=<redacted>") == 2 and "x=1" in out
    assert guard.without_token("/", "token=t") == "./"
    assert guard.without_token("/", "panels=a:b&token=t&range=1d") == "./?panels=a:b&range=1d"
    assert guard.without_token("/index.html", "token=t") == "index.html"
    assert guard.without_token("/x/a:b", "tok%65n=t&k=v") == "./a:b?k=v"


def test_cookie_https_and_navigation():
    """Secure only over HTTPS (X-Forwarded-Proto only when trusted); no Path."""
    assert guard.is_https(False, {"x-forwarded-proto": "https"}, trust_proxy=True)
    assert not guard.is_https(False, {"x-forwarded-proto": "https"}, trust_proxy=False)
    assert guard.is_https(True, {}, trust_proxy=False)
    attrs = guard.cookie_attributes(True)
    assert attrs["secure"] and attrs["httpOnly"] and "path" not in attrs
    assert guard.cookie_attributes(False)["secure"] is None
    assert guard.is_navigation({"sec-fetch-mode": "navigate"})
    assert not guard.is_navigation({"sec-fetch-mode": "cors", "accept": "text/html"})
    assert guard.is_navigation({"accept": "text/html,*/*"})


def test_bad_path():
    """NUL and other control characters in a decoded path are a 400."""
    assert guard.bad_path("/assets/app.js\x00.png").status == 400
    assert guard.bad_path("/assets/app.js") is None


def _body(n_targets, nodes=1):
    return {
        "range": {"from": 1000, "to": 2000},
        "targets": [{"target": f"n{i % nodes}::f{i}"} for i in range(n_targets)],
    }


def test_query_caps():
    """Too many targets or (node, method) pairs is a 400 naming the limit."""
    assert len(grafana.parse_query(_body(grafana.MAX_TARGETS)).targets) == grafana.MAX_TARGETS
    with pytest.raises(WebError, match="limit is 100"):
        grafana.parse_query(_body(grafana.MAX_TARGETS + 1))
    with pytest.raises(WebError, match="pairs"):
        grafana.parse_query(_body(40, nodes=grafana.MAX_GROUPS + 1))


def test_whole_answer_budget():
    """The value limit holds for every group together."""
    check_total_budget(600, 1.0, [(1, None)], 1000)
    with pytest.raises(WebError) as err:
        check_total_budget(600, 1.0, [(1, None), (1, None)], 1000)
    assert err.value.status == 413 and err.value.extra["min_stride"] > 1.0
    with pytest.raises(WebError):
        check_total_budget(600, 1.0, [(1, "minmax")], 1000)


@pytest.mark.parametrize(
    "values",
    [
        np.array([1.5, np.nan, np.inf, 3.0]),
        np.array([True, False, True, True]),
        np.array(["a", "b", "c", "d"], dtype=object),
        np.arange(4),
    ],
)
def test_sliced_json_matches(values, monkeypatch):
    """timeserie_json / table_json give exactly what json.dumps of the dicts gives."""
    monkeypatch.setattr(grafana, "SLICE", 3)
    t = np.array([1.0, 2.0, 3.5, 4.0]) + 1.7e9
    for error in (None, "why"):
        want = json.dumps(grafana.timeserie("n::f", t, values, error), separators=(",", ":"))
        assert grafana.timeserie_json("n::f", t, values, error) == want
        want = json.dumps(grafana.table("n::f", t, values, "number", error), separators=(",", ":"))
        assert grafana.table_json("n::f", t, values, "number", error) == want


def test_fair_limiter_turns():
    """At most `limit` run; a request holds at most `per_request`; waiting tasks
    of another request start before the rest of a big request's queue."""
    limiter = FairLimiter(2, per_request=2)
    gates: dict[str, Deferred] = {}
    order: list[str] = []

    def task(name):
        async def go():
            order.append(name)
            gates[name] = Deferred()
            return await gates[name]

        return go

    done = [ensureDeferred(limiter.run("c", task(f"big{i}"), "big")) for i in range(5)]
    done.append(ensureDeferred(limiter.run("c", task("small"), "small")))
    assert order == ["big0", "big1"] and limiter.running == 2 and limiter.waiting == 4
    gates["big0"].callback(None)
    assert order[-1] == "small", "the other request waited behind the whole queue"
    for name in ("big1", "small", "big2", "big3", "big4"):
        gates[name].callback(None)
    assert all(d.called for d in done) and limiter.running == 0 and limiter.waiting == 0
    assert limiter.stats()["started"] == 6

    capped = FairLimiter(4, per_request=1)
    order.clear()
    for i in range(3):
        ensureDeferred(capped.run("c", task(f"r{i}"), "one"))
    assert order == ["r0"] and capped.running == 1
