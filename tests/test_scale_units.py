"""Unit tests of the parts that keep a site of hundreds of nodes quiet and quick.

They import Twisted's flavour of autobahn, which would clash with the asyncio
client other tests use in this process, so each runs in a child Python.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def run_checks(code: str) -> None:
    """Run ``code`` in a fresh Python; its assertion errors fail the test."""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_authorizer_logs_refusals_without_hub_once_per_interval():
    """Hundreds of refusals while no hub runs give one log line per interval, the
    next one counting those left out (a router restart brings every node back at once)."""
    run_checks("""
from sisock.site import authorizer as mod

class Log:
    def __init__(self):
        self.lines = []
    def warn(self, fmt, **kw):
        self.lines.append(fmt.format(**kw))

now = [1000.0]
a = mod.Authorizer()
a.log = Log()
a._away = mod.Tally(mod.HUB_AWAY_LOG_SECONDS, clock=lambda: now[0])
for _ in range(400):
    assert a._hub_away("register", "x.consumer.n.get_data", RuntimeError("no hub")) is False
assert len(a.log.lines) == 1, a.log.lines
now[0] += mod.HUB_AWAY_LOG_SECONDS + 1
a._hub_away("publish", "x.consumer.n.live", RuntimeError("no hub"))
assert len(a.log.lines) == 2, a.log.lines
assert "399 more refusals" in a.log.lines[1], a.log.lines
""")


def test_hub_asks_the_router_concurrently_and_keeps_answers_by_key():
    """The hub's meta-API helper keeps each answer with its question, never has more
    than its limit in flight (a rebuild asks hundreds), and lets a failure out as itself."""
    run_checks("""
from twisted.internet.defer import Deferred, ensureDeferred
from sisock.hub.session import _ask_all

pending, most = {}, [0]

async def ask(k):
    d = Deferred()
    pending[k] = d
    most[0] = max(most[0], len(pending))
    v = await d
    del pending[k]
    return v

got = []
ensureDeferred(_ask_all(range(10), ask, limit=3)).addCallback(got.append)
while pending:
    k = min(pending)
    pending[k].callback(k * k)
assert got == [{k: k * k for k in range(10)}], got
assert most[0] == 3, most

async def failing(k):
    if k == 2:
        raise KeyError("gone")
    return k

failures = []
ensureDeferred(_ask_all(range(4), failing)).addErrback(failures.append)
assert failures and failures[0].check(KeyError), failures
""")


def test_bridge_drops_malformed_live_payloads():
    """A live payload whose values have no matching times, or that does not decode,
    is dropped by the web bridge (never forwarded to browsers, never a traceback);
    a well-formed one becomes JSON lists."""
    run_checks(
        "from sisock.web.session import live_json\n"
        "for bad in ({'data': 5}, {'timeline': {'t': {'t': 'notalist'}}}, 'x', None,\n"
        "            {'data': {'x': [1, 2, 3]}, 'timeline': {'tl': {'t': [1.0, 2.0]}}},\n"
        "            {'data': {'x': [1]}, 'timeline': 7}):\n"
        "    assert live_json(bad) is None, bad\n"
        "ok = live_json({'data': {'x': [1.5, None]}, 'timeline': {'tl': {'t': [1.0, 2.0]}}})\n"
        "assert ok['data']['x'][0] == 1.5 and ok['timeline']['tl']['t'] == [1.0, 2.0], ok\n"
    )
