"""The hub as a WAMP component: wires :class:`~sisock.hub.registry.Registry` to RPCs.

It trusts the router, not its callers: the owner of a name is the caller's
session as disclosed by the router (``details.caller``), and the
``session_id`` argument of ``data_node.add`` / ``data_node.subtract`` is
only used if the router does not disclose callers.

After a hub restart the registry is rebuilt from the router's own
registrations (every ``{base}.consumer.<name>.get_data`` and its callee
session), then ``{base}.hub.started`` is published so running nodes re-add
themselves with their descriptions.
"""

from __future__ import annotations

import functools
import inspect

from autobahn.twisted.component import Component
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions
from twisted.logger import Logger

from sisock.protocol import valid_name
from sisock.settings import Settings

from .registry import Registry

log = Logger(namespace="sisock.hub")


class Hub:
    """Hub RPC handlers bound to one WAMP session at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.uris = settings.uris
        self.registry = Registry()
        self.session = None

    @staticmethod
    def _caller(details, claimed: object) -> object:
        caller = getattr(details, "caller", None) if details is not None else None
        return caller if caller is not None else claimed

    # -- RPCs -------------------------------------------------------------
    def add(self, name, description, session_id=None, details=None) -> bool:
        """``data_node.add``: list ``name`` for the calling session."""
        if not valid_name(name):
            log.warn("refused data node name {name!r}: use letters, digits, '_' or '-'",
                     name=name)
            return False
        caller = self._caller(details, session_id)
        ok, newly = self.registry.add(name, description if isinstance(description, str) else "",
                                      caller)
        if not ok:
            log.warn("refused data node {name!r} for session {s}: owned by session {o}",
                     name=name, s=caller, o=self.registry.owner(name))
            return False
        if newly:
            log.info("added data node {name!r} (session {s})", name=name, s=caller)
            self.session.publish(self.uris.node_added,
                                 {"name": name, "description": self.registry.description(name)})
        return True

    def subtract(self, name, session_id=None, details=None) -> None:
        """``data_node.subtract``: only the owning session may remove a name."""
        if not valid_name(name):
            return None
        caller = self._caller(details, session_id)
        entry = self.registry.subtract(name, caller)
        if entry is not None:
            log.info("subtracted data node {name!r}", name=name)
            self.session.publish(self.uris.node_subtracted, entry.public())
        elif self.registry.owner(name) is not None:
            log.warn("session {s} may not subtract {name!r}", s=caller, name=name)

    def claim(self, name, session=None, replica=False, authid=None, details=None) -> bool:
        """``data_node.claim``: reserve ``name`` without listing it.

        The router's authorizer asks on behalf of ``session`` (its own
        calls are not disclosed); a data node may claim only for itself,
        so for a disclosed caller the argument is ignored. ``replica`` asks
        to join a replicated name; ``authid`` is that of the asking session
        (the router's, when it discloses the caller).
        """
        if not valid_name(name):
            return False
        disclosed = getattr(details, "caller", None) if details is not None else None
        if disclosed is not None:
            authid = getattr(details, "caller_authid", None)
        return self.registry.claim(name, self._caller(details, session), replica=bool(replica),
                                   authid=authid if isinstance(authid, str) else None)

    def get_replicas(self) -> dict:
        """``consumer.get_replicas``: ``{name: number of sessions serving it}``."""
        return self.registry.replica_counts()

    def get_data_node(self) -> list:
        """``consumer.get_data_node``: the listed nodes."""
        return self.registry.listed()

    def on_leave(self, session_id) -> None:
        """``wamp.session.on_leave``: forget the names of a gone session."""
        for entry in self.registry.drop_session(session_id):
            log.info("data node {name!r} left", name=entry.name)
            self.session.publish(self.uris.node_subtracted, entry.public())

    def _checked(self, fn, leaf: str):
        """Wrap an RPC: wrong arguments and failures leave as ``{base}.error.*``.

        Without it a call with the wrong arity gets autobahn's
        ``wamp.error.invalid_argument`` with a Python ``TypeError`` text.
        """
        sig = inspect.signature(fn)
        shown = ", ".join(p for p in sig.parameters if p != "details")

        @functools.wraps(fn)
        def rpc(*args, **kwargs):
            try:
                sig.bind(*args, **kwargs)
            except TypeError:
                given = [k for k in kwargs if k != "details"]
                raise ApplicationError(
                    self.uris.error("bad_argument"),
                    f"{leaf} takes ({shown}), got {len(args)} positional argument(s)"
                    + (f" and keywords {sorted(given)}" if given else "")) from None
            try:
                return fn(*args, **kwargs)
            except ApplicationError:
                raise
            except Exception as exc:
                log.failure("{leaf} failed", leaf=leaf)
                raise ApplicationError(self.uris.error("internal"),
                                       f"{leaf} failed in the hub: {type(exc).__name__}: {exc}"
                                       ) from exc
        return rpc

    # -- lifecycle --------------------------------------------------------
    async def rebuild(self, session) -> int:
        """Recover names from the router's registrations.

        A session serving ``<name>.get_data`` is listed again; one holding
        any other procedure under ``<name>.`` keeps the name as claimed.
        """
        regs = await session.call("wamp.registration.list")
        found = 0
        for reg_id in regs.get("exact", []):
            info = await session.call("wamp.registration.get", reg_id)
            uri = (info or {}).get("uri", "")
            name = self.uris.node_name(uri)
            if name is None:
                continue
            callees = await session.call("wamp.registration.list_callees", reg_id)
            if not callees:
                continue
            if uri.endswith(".get_data") and info.get("invoke", "single") != "single":
                self.registry.restore_replicas(name, callees,
                                               await self._authid(session, callees[0]))
                found += 1
            elif uri.endswith(".get_data"):
                self.registry.restore(name, callees[0])
                found += 1
            else:
                self.registry.claim(name, callees[0])
        return found

    @staticmethod
    async def _authid(session, session_id: int) -> str | None:
        """The authid of a running session (None if the router will not say)."""
        try:
            info = await session.call("wamp.session.get", session_id)
        except Exception:
            return None
        return (info or {}).get("authid")

    async def on_join(self, session, details) -> None:
        """Follow session departures, rebuild, then register the RPCs and announce.

        Rebuilding before registering means no claim can slip in for a name
        a running node already serves.
        """
        self.session = session
        self.registry = Registry()
        await session.subscribe(self.on_leave, "wamp.session.on_leave")
        found = await self.rebuild(session)
        opts = RegisterOptions(details_arg="details")
        checked = self._checked
        await session.register(checked(self.add, "data_node.add"), self.uris.add, options=opts)
        await session.register(checked(self.subtract, "data_node.subtract"), self.uris.subtract,
                               options=opts)
        await session.register(checked(self.claim, "data_node.claim"), self.uris.claim,
                               options=opts)
        await session.register(checked(self.get_data_node, "consumer.get_data_node"),
                               self.uris.list_nodes)
        await session.register(checked(self.get_replicas, "consumer.get_replicas"),
                               self.uris.list_replicas)
        session.publish(self.uris.hub_started, {"session": details.session})
        log.info("hub ready (session {s}); {n} running data node(s) recovered",
                 s=details.session, n=found)


def make_hub_component(component: Component, settings: Settings) -> Hub:
    """Attach a :class:`Hub` to ``component`` and return it."""
    hub = Hub(settings)
    component.on("join", hub.on_join)
    return hub
