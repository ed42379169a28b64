"""Decisions the router may cache, and attackers around cached decisions.

Crossbar keeps a decision the authorizer marks ``cache: True`` for the
router's life, looked up by (realm, role, URI, action) only: not by
session, authid or options. The authorizer marks only the ``server``
role's calls to ``data_node.add``, ``.subtract`` and ``.claim``, which are
the same for every ``server`` session (allowed, caller disclosed to the
hub). A second ``server`` session and a consumer, with the stack's real
credentials, play the attacker before and after those decisions are
cached, on a router of their own (so nothing is cached at the start).
"""

from __future__ import annotations

from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions, SubscribeOptions

from conftest import listed, wait_for
from test_name_ownership import BASE, REFUSED, ServerSession, close_all, consumer_uri, refused, server_session

pytestmark = pytest.mark.timeout(240)

HUB_CALLS = ("data_node.add", "data_node.subtract", "data_node.claim")


def _answer(uri: str, action: str, options: dict | None = None, owner: bool = False) -> dict:
    """What the authorizer answers the router (``owner``: the hub grants the name)."""
    from sisock.site.access import authorization, decide

    match = (options or {}).get("match", "exact")
    return authorization(decide(BASE, uri, action, match), owner=owner)


def test_only_role_uniform_decisions_are_cached() -> None:
    """``cache: True`` for the three hub calls only, each allowed with the caller disclosed.

    Decisions that depend on the session (register, publish under a name,
    even when the hub grants it), on the options (the ``hub.started``
    subscription, allowed for an exact match only) or that refuse (any URI
    an attacker tries, which would stay in the router's memory) are not.
    """
    for leaf in HUB_CALLS:
        assert _answer(f"{BASE}.{leaf}", "call") == {"allow": True, "disclose": True, "cache": True}
    not_cached = [
        (f"{BASE}.hub.started", "subscribe", {"match": "exact"}),
        (f"{BASE}.hub.started", "subscribe", {"match": "prefix"}),
        (consumer_uri("mine", "get_data"), "register", {"match": "exact"}),
        (consumer_uri("mine", "get_data"), "register", {"match": "exact", "invoke": "roundrobin"}),
        (consumer_uri("mine", "get_data"), "register", {"match": "prefix"}),
        (consumer_uri("mine", "live"), "publish", {}),
        (f"{BASE}.operator.mine.set", "register", {"match": "exact"}),
        (f"{BASE}.operator.mine.set", "call", {}),
        (consumer_uri("mine", "get_data"), "call", {}),
        ("wamp.session.list", "call", {}),
        (f"{BASE}.data_node.add", "register", {"match": "exact"}),
        (f"{BASE}.data_node.add", "publish", {}),
        (f"{BASE}.consumer.data_node_added", "publish", {}),
    ]
    for uri, action, options in not_cached:
        for owner in (False, True):
            d = _answer(uri, action, options, owner)
            assert d["cache"] is False, (uri, action, options, owner, d)
    # granted by the hub, yet not cached: the next session may not own the name
    granted = _answer(consumer_uri("mine", "live"), "publish", owner=True)
    assert granted == {"allow": True, "disclose": False, "cache": False}
    assert _answer(consumer_uri("mine", "live"), "publish")["allow"] is False
    assert _answer(f"{BASE}.hub.started", "subscribe", {"match": "prefix"})["allow"] is False


def _as_consumer(client: Any, fn) -> Any:
    """Run ``fn(session)`` in a notebook client's session."""
    import asyncio

    async def go():
        return await fn(client._session)

    return asyncio.run_coroutine_threadsafe(go(), client._loop).result(20)


def _consumer_refused(client: Any) -> None:
    """A consumer may register and publish nothing, node URIs included."""
    for uri in (consumer_uri("cache_victim", "evil"), consumer_uri("cache_nobody", "get_data")):
        with pytest.raises(ApplicationError) as err:
            _as_consumer(client, lambda s, uri=uri: s.register(lambda *a, **k: "fake", uri))
        assert err.value.error in REFUSED
    with pytest.raises(ApplicationError) as err:
        _as_consumer(
            client,
            lambda s: s.publish(
                consumer_uri("cache_victim", "live"), {"data": {}}, options=PublishOptions(acknowledge=True)
            ),
        )
    assert err.value.error in REFUSED


def _attacker_refused(b: ServerSession, owner: int, client: Any) -> None:
    """Everything ``b`` tries against ``cache_victim`` (owned by session ``owner``) fails."""
    # a forged session id: the hub must still see b's real session (the
    # cached decision keeps the caller disclosed), or it would take the id
    assert b.call("data_node.add", "cache_victim", "stolen", owner) is False
    assert b.call("data_node.claim", "cache_victim", owner) is False
    b.call("data_node.subtract", "cache_victim", owner)
    assert "cache_victim" in listed(client)
    assert refused(lambda: b.register(consumer_uri("cache_victim", "evil")))
    assert refused(lambda: b.register(consumer_uri("cache_victim", "spare")))
    assert refused(lambda: b.register(consumer_uri("cache_victim", "evil2"), invoke="roundrobin"))
    with pytest.raises(ApplicationError):  # taken, and not b's to take
        b.register(consumer_uri("cache_victim", "get_data"))
    assert refused(lambda: b.register(f"{BASE}.operator.cache_victim.set"))
    assert refused(lambda: b.publish(consumer_uri("cache_victim", "live"), {"data": {"x": [666.0]}}))
    assert refused(
        lambda: b._run(
            lambda s: s.register(lambda *a, **k: "fake", f"{BASE}.consumer.", options=RegisterOptions(match="prefix"))
        )
    )
    assert refused(
        lambda: b._run(
            lambda s: s.subscribe(lambda *a, **k: None, f"{BASE}.hub.started", options=SubscribeOptions(match="prefix"))
        )
    )
    assert client.call(consumer_uri("cache_victim", "get_data"), ["owner"], -10, 0)["data"] == {"owner": [1.0]}


@pytest.mark.integration  # a router of its own: nothing cached when it starts
def test_cached_decisions_give_an_attacker_nothing(tmp_path) -> None:
    """A second ``server`` session and a consumer gain nothing from cached decisions.

    On a fresh router, the attacker and a consumer try every way into a
    name owned by another session before the hub calls' decisions are
    cached (only the owner's own ``add`` has been made) and again after
    each call has been made by several sessions, including the attacker's
    own legitimate use of them; a subscription to ``hub.started``, allowed
    as an exact match, is made before the prefix attempt. The owner keeps
    its name and answers throughout.
    """
    from privstack import PrivateStack

    ps = PrivateStack(tmp_path)
    opened: list[ServerSession] = []
    try:
        ps.start_router()
        ps.start("hub", "hub")
        a = server_session(ps.url, ps.home)
        opened.append(a)
        wait_for(lambda: _answers(a), 60, "hub never answered")
        a.serve("cache_victim")
        owner = a.client._session.session_id
        # the owner publishes and registers a procedure it then withdraws: a
        # router caching name grants would hand both to the next session
        a.publish(consumer_uri("cache_victim", "live"), {"data": {"owner": [1.0]}})
        a.unregister(a.register(consumer_uri("cache_victim", "spare")))
        with ps.connect(timeout=30) as c:
            wait_for(lambda: "cache_victim" in listed(c), 30, "victim never listed")
            b = server_session(ps.url, ps.home)
            opened.append(b)
            _consumer_refused(c)
            _attacker_refused(b, owner, c)  # the first subtract and claim ask the authorizer
            # every hub call made by several sessions: cached by now
            b._run(lambda s: s.subscribe(lambda *a, **k: None, f"{BASE}.hub.started"))
            b.serve("cache_own")
            b.call("data_node.subtract", "cache_own", 0)
            assert b.call("data_node.claim", "cache_other") is True
            third = server_session(ps.url, ps.home)
            opened.append(third)
            assert third.call("data_node.claim", "cache_victim") is False
            for _ in range(2):
                _consumer_refused(c)
                _attacker_refused(b, owner, c)
                _attacker_refused(third, owner, c)
            # the rightful owner still uses the cached decisions as before
            assert a.call("data_node.add", "cache_victim", "the real node", 0) is True
            assert "cache_victim" in listed(c)
    finally:
        close_all(opened)
        ps.stop()


def _answers(s: ServerSession) -> bool:
    """True once the hub answers ``data_node.claim``."""
    from sisock.client import ClientError

    try:
        s.call("data_node.claim", "cache_probe", timeout=3)
        return True
    except ClientError:
        return False


def _role_permissions(config: dict, role: str) -> list[dict]:
    for worker in config["workers"]:
        for realm in worker.get("realms", []):
            for r in realm.get("roles", []):
                if r["name"] == role:
                    return r["permissions"]
    raise KeyError(role)


@pytest.mark.unit
def test_people_roles_leave_no_decision_in_the_routers_cache():
    """Consumer and operator permissions are never cached, a URI they match nothing
    included (Crossbar's default refusal is cached): each distinct URI a person's
    session calls would otherwise stay in the router's memory for good."""
    import json

    from sisock.site.router import template_path

    config = json.loads(template_path().read_text())
    for role in ("consumer", "operator"):
        perms = _role_permissions(config, role)
        assert all(p.get("cache") is False for p in perms), role
        catch_all = [p for p in perms if p["uri"] == "" and p["match"] == "prefix"]
        assert catch_all and not any(catch_all[0]["allow"].values()), role


@pytest.mark.integration
def test_consumer_calling_many_uris_does_not_grow_the_router(tmp_path):
    """A consumer calling 30,000 distinct URIs (none registered) leaves the router's
    memory as it was; with cached decisions it grew by about 430 bytes per URI."""
    import asyncio

    import psutil

    from privstack import PrivateStack

    ps = PrivateStack(tmp_path)
    try:
        ps.start_router()
        router = psutil.Process(ps.router.proc.pid)

        def router_rss() -> int:
            procs = [router] + router.children(recursive=True)
            return sum(p.memory_info().rss for p in procs)

        with ps.connect(timeout=30) as c:
            s, loop = c._session, c._loop

            async def spam(first: int, n: int) -> None:
                for i in range(first, first + n, 200):
                    calls = [s.call(f"{BASE}.consumer.n{j}x.get_data") for j in range(i, min(i + 200, first + n))]
                    await asyncio.gather(*calls, return_exceptions=True)

            asyncio.run_coroutine_threadsafe(spam(0, 5000), loop).result(600)  # warm the router up
            before = router_rss()
            asyncio.run_coroutine_threadsafe(spam(5000, 30000), loop).result(600)
            grown = router_rss() - before
        assert grown < 4 * 2**20, f"router grew by {grown / 2**20:.1f} MiB"
    finally:
        ps.stop()
