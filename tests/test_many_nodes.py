"""A site with many nodes: starting before the hub, hub restarts, the bridge's list.

Forty nodes run in one process (``tests/many_nodes.py``, one session each)
on the session's router.
"""

from __future__ import annotations

import sys
import time

import pytest

from conftest import REPO, listed, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N = 40
#: ``sisock.site.authorizer.HUB_AWAY_LOG_SECONDS`` (a Twisted module, not imported here).
HUB_AWAY_LOG_SECONDS = 10.0


def described(client) -> dict[str, str]:
    """``{name: description}`` the hub lists ({} while it cannot say)."""
    from sisock.wamp.client import ClientError

    try:
        return {n["name"]: n["description"] for n in client.nodes()}
    except ClientError:
        return {}


def test_nodes_started_before_the_hub_are_listed_and_survive_hub_restarts(stack, procs, client):
    """Forty nodes that join while no hub runs are all listed, with their descriptions,
    once it starts, and again after a hub restart; meanwhile the router's log says
    once per interval that it refuses them, not once per attempt."""
    router_log = stack.router.log_path
    names = {f"early{i:03d}" for i in range(N)}
    stack.hub.stop()
    try:
        log_start = router_log.stat().st_size
        t_away = time.monotonic()
        many = procs("early", sys.executable, str(REPO / "tests" / "many_nodes.py"), "early", str(N), module=None)
        wait_for(
            lambda: many.log().count("no hub is running yet") >= N,
            60,
            f"the nodes never found the hub missing:\n{many.log()}",
        )
    finally:
        away = time.monotonic() - t_away
        stack.hub.start()
    with open(router_log, "rb") as f:
        f.seek(log_start)
        refusals = f.read().decode(errors="replace").count("cannot ask the hub")
    # one line per interval while the hub was away (and one as it came back)
    assert refusals <= 2 + away / HUB_AWAY_LOG_SECONDS, refusals

    def all_described() -> bool:
        d = described(client)
        return names <= set(d) and all(d[n] == f"test node {n}" for n in names)

    wait_for(all_described, 60, f"not every node listed with its description:\n{many.log()}")
    stack.hub.stop()
    wait_for(lambda: not listed(client), 20, "hub still answering")
    stack.hub.start()
    wait_for(all_described, 60, "not every node listed again after the hub restart")
    assert "already served by another session" not in many.log()


def test_bridge_list_follows_a_node_lost_while_the_hub_was_away(web_demo, procs):
    """The bridge answers GET /api/nodes from its own copy of the hub's list: a node
    that left while the hub was down is gone from it once the hub is back."""
    import json

    from conftest import http

    def names() -> set[str] | None:
        status, _, body = http("GET", web_demo.url + "/api/nodes", timeout=10)
        return {n["name"] for n in json.loads(body)} if status == 200 else None

    wx = procs("wx", "serve", "weather", "--name", "wx_lost")
    wait_for(lambda: "wx_lost" in (names() or set()), 60, "wx_lost never listed")
    stack = web_demo.stack
    stack.hub.stop()
    try:
        wx.kill()
    finally:
        stack.hub.start()
    wait_for(
        lambda: (n := names()) is not None and "wx_lost" not in n and {"webarch", "websens", "webwx"} <= n,
        60,
        f"the bridge still lists wx_lost (or lost the others): {names()}",
    )
