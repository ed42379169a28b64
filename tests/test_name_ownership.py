"""Name ownership through the real router: one owner per name, everywhere.

A second ``server`` session with the stack's real credentials plays the
attacker (the shared ``server`` account every node on the machine uses).
It must never publish or register under a name it no longer owns, and no
name may be handed to another session while it still holds procedures
under ``{base}.consumer.<name>.`` or ``{base}.operator.<name>.``; this
must hold for unlisted names, replicas, and across hub and router
restarts (``docs/security.md``, "Name ownership").
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions

from conftest import listed, wait_for
from sisock.site import credentials
from sisock.client import Client, ClientError, RemoteError, connect
from sisock.hub.registry import MAX_DESCRIPTION, MAX_NAMES_PER_SESSION, Registry

pytestmark = pytest.mark.timeout(240)

BASE = "org.simonsobservatory"

#: What the router answers a refused register or publish.
REFUSED = ("wamp.error.not_authorized", "wamp.error.authorization_failed")


def consumer_uri(name: str, leaf: str) -> str:
    """``{base}.consumer.<name>.<leaf>``."""
    return f"{BASE}.consumer.{name}.{leaf}"


class ServerSession:
    """A ``server``-role session holding the stack's real credentials.

    Parameters
    ----------
    client : Client
        A connected client logged in with the ``server`` account.
    """

    def __init__(self, client: Client) -> None:
        self.client = client

    def _run(self, fn: Callable[[Any], Any], timeout: float = 20.0) -> Any:
        async def go():
            return await fn(self.client._session)

        return asyncio.run_coroutine_threadsafe(go(), self.client._loop).result(timeout)

    def register(self, uri: str, fn: Callable[..., Any] | None = None, invoke: str | None = None) -> Any:
        """Register ``uri`` (raises :class:`ApplicationError` when refused)."""
        opts = RegisterOptions(invoke=invoke) if invoke else None
        return self._run(lambda s: s.register(fn or (lambda *a, **k: "fake"), uri, options=opts))

    def unregister(self, registration: Any) -> None:
        """Withdraw one registration."""
        self._run(lambda s: registration.unregister())

    def publish(self, uri: str, payload: Any) -> None:
        """Publish with acknowledgement (raises :class:`ApplicationError` when refused)."""
        self._run(lambda s: s.publish(uri, payload, options=PublishOptions(acknowledge=True)))

    def call(self, uri: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``uri`` (relative to the base URI) through the client."""
        return self.client.call(uri, *args, **kwargs)

    def serve(self, name: str) -> list:
        """Register ``get_fields``/``get_data`` for ``name`` like a node, then add it."""
        regs = [
            self.register(consumer_uri(name, "get_fields"), lambda *a, **k: [{}, {}]),
            self.register(consumer_uri(name, "get_data"), lambda *a, **k: {"data": {"owner": [1.0]}, "timeline": {}}),
        ]
        assert self.call("data_node.add", name, "the real node", 0) is True
        return regs

    def close(self) -> None:
        """Leave the router."""
        self.client.close()


def refused(action: Callable[[], Any]) -> bool:
    """True when ``action`` is refused by the router's authorizer."""
    try:
        action()
    except ApplicationError as exc:
        assert exc.error in REFUSED, exc
        return True
    return False


def server_session(url: str | None = None, home: Any = None) -> ServerSession:
    """Log in with the ``server`` account of the stack in ``home``.

    Parameters
    ----------
    url : str, optional
        Router URL; default ``SISOCK_ROUTER_URL`` (the session router).
    home : path, optional
        The stack's ``SISOCK_HOME``; default the session router's.
    """
    home = home or os.environ["SISOCK_HOME"]
    creds = credentials.read(home)["server"]
    return ServerSession(connect(url, user=creds["authid"], secret=creds["secret"], home=str(home), timeout=20))


def close_all(opened: list[ServerSession]) -> None:
    """Close every session of ``opened`` (a test's cleanup: one that fails to close is skipped)."""
    for s in opened:
        try:
            s.close()
        except Exception:
            pass


@pytest.fixture
def sessions(stack) -> Iterator[Callable[[], ServerSession]]:
    """Open ``server`` sessions (attacker and rightful nodes), closed after the test."""
    opened: list[ServerSession] = []

    def open_one() -> ServerSession:
        s = server_session()
        opened.append(s)
        return s

    yield open_one
    close_all(opened)


def replicas(client: Client) -> dict:
    """The hub's ``{name: sessions serving it}``."""
    return client.call("consumer.get_replicas")


# -- through the session router ---------------------------------------------------


def test_unlisted_subtract_then_publish_refused(stack, procs, client, sessions) -> None:
    """Finding 1: after subtracting an unlisted name, its old session may not publish or register.

    The attacker claims ``own_victim`` by registering a procedure, unregisters
    it and subtracts the (never listed) name; a real weather node then serves
    the name. The attacker's ``live`` publish and a new registration under
    the name must both be refused.
    """
    a = sessions()
    reg = a.register(consumer_uri("own_victim", "zzz"))
    a.unregister(reg)
    a.call("data_node.subtract", "own_victim", 0)
    node = procs("wx", "serve", "weather", "--name", "own_victim")
    wait_for(lambda: "own_victim" in listed(client), 30, "the node never got its name:\n" + node.log())
    assert refused(
        lambda: a.publish(consumer_uri("own_victim", "live"), {"data": {"t_stage": [999.0]}, "timeline": {}})
    )
    assert refused(lambda: a.register(consumer_uri("own_victim", "other")))
    field, _ = client.fields("own_victim", -3600, 0)
    assert "temperature" in field  # the consumer still sees the real node's fields


def test_subtract_with_procedures_registered_keeps_name(stack, client, sessions) -> None:
    """Finding 2: a name is not handed over while its old owner still has procedures under it.

    The attacker registers ``get_data``, adds the name and subtracts it
    while the procedure is still registered: the name is unlisted but stays
    the attacker's, so another node's ``add`` is refused (the 0.x answer
    False) and its registration too. Once the attacker unregisters and
    subtracts again, the other node gets the name and serves it.
    """
    a, b = sessions(), sessions()
    reg = a.register(consumer_uri("own_victim2", "get_data"), lambda *x, **k: {"data": {"fake": [1.0]}, "timeline": {}})
    assert a.call("data_node.add", "own_victim2", "fake", 0) is True
    wait_for(lambda: "own_victim2" in listed(client), 30, "the attacker's name was not listed")
    a.call("data_node.subtract", "own_victim2", 0)
    wait_for(lambda: "own_victim2" not in listed(client), 30, "subtract did not unlist")
    assert b.call("data_node.add", "own_victim2", "the real node", 0) is False
    assert b.call("data_node.claim", "own_victim2") is False
    assert refused(lambda: b.register(consumer_uri("own_victim2", "get_fields")))
    a.unregister(reg)
    a.call("data_node.subtract", "own_victim2", 0)
    wait_for(
        lambda: b.call("data_node.claim", "own_victim2"),
        30,
        "the name never became free after its procedures were gone",
    )
    b.serve("own_victim2")
    assert refused(lambda: a.publish(consumer_uri("own_victim2", "live"), {"data": {}}))
    assert client.call(consumer_uri("own_victim2", "get_data"), ["owner"], -10, 0)["data"] == {"owner": [1.0]}


def test_operator_procedures_hold_the_name(stack, sessions) -> None:
    """A procedure under ``{base}.operator.<name>.`` is the owner's and keeps the name.

    A server may register ``{base}.operator.<its own name>.<leaf>``, never
    another session's; while it holds one, a subtract does not free the name.
    """
    a, b = sessions(), sessions()
    reg = a.register(f"{BASE}.operator.own_victim3.set")
    assert refused(lambda: b.register(f"{BASE}.operator.own_victim3.points"))
    a.call("data_node.subtract", "own_victim3", 0)
    assert b.call("data_node.claim", "own_victim3") is False
    a.unregister(reg)
    a.call("data_node.subtract", "own_victim3", 0)
    wait_for(lambda: b.call("data_node.claim", "own_victim3"), 30, "name never freed")
    b.register(f"{BASE}.operator.own_victim3.points")
    assert refused(lambda: a.register(f"{BASE}.operator.own_victim3.set"))


def test_replica_withdrawal_revokes(stack, client, sessions) -> None:
    """A replica that unregisters and subtracts stops owning the replicated name at once.

    With the shared ``server`` account the attacker can join a replicated
    name (same authid). Once it has withdrawn, its ``live`` publish and any
    new registration under the name are refused, while the rightful replica
    keeps serving.
    """
    rightful, a = sessions(), sessions()
    rightful.register(consumer_uri("own_rep", "get_data"), invoke="roundrobin")
    assert rightful.call("data_node.add", "own_rep", "replicated", 0) is True
    reg = a.register(consumer_uri("own_rep", "get_fields"), invoke="roundrobin")
    wait_for(lambda: replicas(client).get("own_rep") == 2, 30, "attacker replica not counted")
    a.unregister(reg)
    a.call("data_node.subtract", "own_rep", 0)
    wait_for(lambda: replicas(client).get("own_rep") == 1, 30, "withdrawn replica still counted")
    assert refused(lambda: a.publish(consumer_uri("own_rep", "live"), {"data": {"x": [9.0]}}))
    assert refused(lambda: a.register(consumer_uri("own_rep", "zzz")))
    rightful.publish(consumer_uri("own_rep", "live"), {"data": {}, "timeline": {}})


def test_replica_still_registered_keeps_name_through_leave(stack, client, sessions) -> None:
    """A replica still registered stays a member when it subtracts, and is promoted on a leave.

    The attacker joins the rightful replica's shared ``get_data`` and
    subtracts without unregistering: it remains one of two members. When the
    rightful replica's session leaves, the attacker is promoted, and the
    name is not handed to a new single node while the attacker's shared
    procedure can still answer its calls.
    """
    rightful, a, b = sessions(), sessions(), sessions()
    rightful.register(consumer_uri("own_rep2", "get_data"), invoke="roundrobin")
    assert rightful.call("data_node.add", "own_rep2", "replicated", 0) is True
    a.register(consumer_uri("own_rep2", "get_data"), invoke="roundrobin")
    wait_for(lambda: replicas(client).get("own_rep2") == 2, 30, "attacker replica not counted")
    a.call("data_node.subtract", "own_rep2", 0)
    assert replicas(client).get("own_rep2") == 2  # still registered: still a member
    rightful.close()
    wait_for(lambda: replicas(client).get("own_rep2") == 1, 20, "leaving replica still counted")
    assert b.call("data_node.claim", "own_rep2") is False
    assert b.call("data_node.add", "own_rep2", "the real node", 0) is False
    assert refused(lambda: b.register(consumer_uri("own_rep2", "get_fields")))
    a.publish(consumer_uri("own_rep2", "live"), {"data": {}, "timeline": {}})  # promoted: its own


def test_hub_restart_keeps_one_owner(stack, client, sessions) -> None:
    """A restarted hub knows the names the authorizer granted, even without registrations.

    The attacker owns ``own_victim4`` only by publishing its live topic.
    After a hub restart another session may not claim or register it; once
    the attacker subtracts, the other session gets it and the attacker's
    publish is refused.
    """
    a, b = sessions(), sessions()
    a.publish(consumer_uri("own_victim4", "live"), {"data": {}, "timeline": {}})
    reg = a.register(consumer_uri("own_victim5", "zzz"))
    stack.hub.stop()
    wait_for(lambda: not listed(client), 20, "hub still answering")
    stack.hub.start()
    wait_for(lambda: _answers(b, "data_node.claim", "own_probe"), 30, "the hub did not come back:\n" + stack.hub.log())
    assert b.call("data_node.claim", "own_victim4") is False
    assert refused(lambda: b.register(consumer_uri("own_victim4", "get_data")))
    assert b.call("data_node.claim", "own_victim5") is False
    a.publish(consumer_uri("own_victim4", "live"), {"data": {}, "timeline": {}})  # still A's
    a.call("data_node.subtract", "own_victim4", 0)
    wait_for(lambda: b.call("data_node.claim", "own_victim4"), 30, "name never freed")
    b.serve("own_victim4")
    assert refused(lambda: a.publish(consumer_uri("own_victim4", "live"), {"data": {}}))
    a.unregister(reg)


def _answers(session: ServerSession, uri: str, *args: Any) -> bool:
    """True when ``uri`` answers (the hub is up and has rebuilt its registry)."""
    try:
        session.call(uri, *args, timeout=3)
        return True
    except ClientError:
        return False


def test_limits_per_session(stack, sessions) -> None:
    """A session may own at most MAX_NAMES_PER_SESSION names; descriptions are bounded.

    Past the limit a claim, an add or a registration under a new name is
    refused with a message naming the argument and the limit.
    """
    a = sessions()
    for i in range(MAX_NAMES_PER_SESSION):
        assert a.call("data_node.claim", f"own_lim{i}") is True
    with pytest.raises(RemoteError) as err:
        a.call("data_node.claim", "own_lim_over")
    assert err.value.uri == f"{BASE}.error.bad_argument"
    assert str(MAX_NAMES_PER_SESSION) in str(err.value) and "name" in str(err.value)
    with pytest.raises(RemoteError) as err:
        a.call("data_node.add", "own_lim_over", "", 0)
    assert err.value.uri == f"{BASE}.error.bad_argument"
    with pytest.raises(ApplicationError) as exc:
        a.register(consumer_uri("own_lim_over", "get_data"))
    assert exc.value.error in REFUSED and str(MAX_NAMES_PER_SESSION) in str(exc.value)
    a.call("data_node.subtract", "own_lim0", 0)
    with pytest.raises(RemoteError) as err:
        a.call("data_node.add", "own_lim1", "x" * (MAX_DESCRIPTION + 1), 0)
    assert err.value.uri == f"{BASE}.error.bad_argument"
    assert "description" in str(err.value) and str(MAX_DESCRIPTION) in str(err.value)
    assert a.call("data_node.add", "own_lim1", "x" * MAX_DESCRIPTION, 0) is True
    assert a.call("data_node.claim", "own_lim_over") is True  # room again after the subtract


# -- a private router, restarted ---------------------------------------------------


@pytest.mark.integration  # starts and kills its own router
def test_router_restart_keeps_one_owner(tmp_path) -> None:
    """After a router restart the new authorizer and the rebuilt hub agree on owners.

    A real weather node owns ``rr_node`` before and after a kill -9 of the
    router; the attacker can take neither its name nor, after subtracting an
    unlisted name of its own, publish under that name once another session
    serves it.
    """
    from privstack import PrivateStack

    ps = PrivateStack(tmp_path)
    opened: list[ServerSession] = []
    try:
        ps.start_router()
        ps.start("hub", "hub")
        node = ps.start("wx", "serve", "weather", "--name", "rr_node")
        with ps.connect(timeout=20) as c:
            wait_for(lambda: "rr_node" in listed(c), 60, "node never listed:\n" + node.log())
        a = server_session(ps.url, ps.home)
        opened.append(a)
        a.publish(f"{BASE}.consumer.rr_victim.live", {"data": {}})  # A owns rr_victim
        ps.kill_router()
        ps.start_router()
        with ps.connect(timeout=30) as c:
            wait_for(lambda: "rr_node" in listed(c), 60, "node not back:\n" + node.log())
        b = server_session(ps.url, ps.home)
        opened.append(b)
        wait_for(lambda: _answers(a, "data_node.claim", "rr_probe"), 30, "attacker not back")
        assert a.call("data_node.claim", "rr_node") is False
        assert refused(lambda: a.register(consumer_uri("rr_node", "other")))
        assert refused(lambda: a.publish(consumer_uri("rr_node", "live"), {"data": {}}))
        reg = a.register(consumer_uri("rr_victim", "zzz"))  # a new session: claims it anew
        a.unregister(reg)
        a.call("data_node.subtract", "rr_victim", 0)
        wait_for(lambda: b.call("data_node.claim", "rr_victim"), 30, "name never freed")
        b.serve("rr_victim")
        assert refused(lambda: a.publish(consumer_uri("rr_victim", "live"), {"data": {"t_stage": [999.0]}}))
        assert refused(lambda: a.register(consumer_uri("rr_victim", "other")))
    finally:
        close_all(opened)
        ps.stop()


# -- the registry's rules (pure) ------------------------------------------------------


def test_release_keeps_a_name_still_registered() -> None:
    """A release with registrations left keeps the owner; a sole owner's name is only unlisted."""
    r = Registry()
    assert r.add("n", "d", 1) == (True, True)
    assert r.begin_release("n", 1)
    assert not r.claim("n", 1) and r.add("n", "d", 1) == (False, False)  # mid-release
    assert not r.claim("n", 2)
    gone = r.finish_release("n", 1, still_registered=True)
    assert gone is not None and gone.name == "n" and r.listed() == []
    assert r.owner("n") == 1 and not r.claim("n", 2) and r.claim("n", 1)
    assert r.begin_release("n", 1)
    assert r.finish_release("n", 1) is None  # unlisted already: nothing to announce
    assert r.owner("n") is None and r.claim("n", 2)


def test_release_of_a_replica_and_a_departure_midway() -> None:
    """A replica's release withdraws it alone; a session leaving mid-release ends it."""
    r = Registry()
    for s in (1, 2):
        assert r.claim("arch", s, replica=True, authid="a")
    r.add("arch", "d", 1)
    assert r.begin_release("arch", 1)
    assert r.finish_release("arch", 1) is None and r.members("arch") == {2}
    assert r.begin_release("arch", 2)
    assert [e.name for e in r.drop_session(2)] == ["arch"]
    assert r.finish_release("arch", 2) is None and r.owner("arch") is None


def test_limits_and_restore_conflicts() -> None:
    """Limits raise bad_argument; a restore keeps one owner and reports the others."""
    from sisock.core.errors import BadArgument

    r = Registry(max_names=2, max_description=5)
    assert r.claim("a", 1) and r.claim("b", 1)
    with pytest.raises(BadArgument, match="name.*2"):
        r.claim("c", 1)
    with pytest.raises(BadArgument, match="description.*5"):
        r.add("a", "toolong", 1)
    assert r.restore_members("x", {4: None, 3: None}, replicable=False, listed=True, preferred=4) == {3}
    assert r.owner("x") == 4 and r.members("x") == {4}
    assert r.restore_members("y", {5: "p", 6: "p", 7: "q"}, replicable=True, listed=False) == {7}
    assert r.members("y") == {5, 6} and r.listed() == [{"name": "x", "description": ""}]


def test_operator_uris_belong_to_the_name_owner() -> None:
    """``{base}.operator.<name>.<leaf>`` may be registered by the owner only; never published."""
    from sisock.site.access import decide
    from sisock.core.protocol import Uris

    d = decide(BASE, f"{BASE}.operator.wx.set", "register")
    assert d.verdict == "ask_owner" and d.name == "wx"
    assert decide(BASE, f"{BASE}.operator.wx.set", "register", "prefix").verdict == "deny"
    assert decide(BASE, f"{BASE}.operator.wx.a.set", "register").verdict == "deny"
    assert decide(BASE, f"{BASE}.operator.wx.live", "publish").verdict == "deny"
    assert decide(BASE, f"{BASE}.operator.wx.set", "call").verdict == "deny"
    assert Uris(BASE).owned_prefixes("wx") == (f"{BASE}.consumer.wx.", f"{BASE}.operator.wx.")


def test_subtracted_name_not_reclaimed_by_its_old_session(stack, client, sessions) -> None:
    """A session that subtracted a name may not take it back by publishing or registering
    under it (before, its next publish silently re-claimed the name and kept it from the
    node that should serve it); another session can then have it."""
    a, b = sessions(), sessions()
    assert a.call("data_node.add", "own_given_up", "mine", 0) is True
    a.call("data_node.subtract", "own_given_up", 0)
    assert refused(lambda: a.publish(consumer_uri("own_given_up", "live"), {"data": {"t": [1.0]}, "timeline": {}}))
    assert refused(lambda: a.register(consumer_uri("own_given_up", "get_data")))
    assert a.call("data_node.add", "own_given_up", "again", 0) is False
    assert b.call("data_node.add", "own_given_up", "the real node", 0) is True


@pytest.mark.integration  # its own router: counts the router's and the hub's log lines
def test_refusals_over_the_limit_do_not_flood_the_logs(tmp_path) -> None:
    """A session over its limit of names publishing under 400 new names is refused every
    time, yet the router's log gets at most a few tracebacks and the hub's a few lines (each
    refusal wrote a 5-line traceback in the router's log and a line in the hub's); the
    hub's reason still reaches the session at first."""
    from privstack import PrivateStack

    ps = PrivateStack(tmp_path)
    opened: list[ServerSession] = []
    try:
        ps.start_router()
        hub = ps.start("hub", "hub")
        a = server_session(ps.url, ps.home)
        opened.append(a)
        wait_for(lambda: _answers(a, "data_node.claim", "flood_probe"), 60, "hub never answered")
        for i in range(MAX_NAMES_PER_SESSION - 1):
            assert a.call("data_node.claim", f"flood{i}") is True
        with pytest.raises(ApplicationError) as first:
            a.publish(consumer_uri("flood_over0", "live"), {"data": {}})
        assert str(MAX_NAMES_PER_SESSION) in str(first.value)  # the hub's reason, once
        for i in range(1, 400):
            assert refused(lambda: a.publish(consumer_uri(f"flood_over{i}", "live"), {"data": {}}))
        router_log = ps.router.log_path.read_text(errors="replace")
        hub_log = hub.log_path.read_text(errors="replace")
        assert router_log.count("Traceback") <= 3, router_log.count("Traceback")
        assert hub_log.count("refused") + hub_log.count("onUserError") <= 3, hub_log[-2000:]
    finally:
        close_all(opened)
        ps.stop()
