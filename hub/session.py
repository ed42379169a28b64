"""The hub as a WAMP component: wires :class:`~sisock.hub.registry.Registry` to RPCs.

It trusts the router, not its callers: the owner of a name is the caller's
session as disclosed by the router (``details.caller``), and the
``session_id`` argument of ``data_node.add`` / ``data_node.subtract`` is
only used if the router does not disclose callers.

Name ownership (``docs/security.md``): the registry is the one authority
on who owns a name; the router's authorizer remembers only names the hub
confirmed. Before a session stops owning a name (``data_node.subtract``)
the hub tells the authorizer (``{base}.authorizer.release``), then looks
at the router's registrations: a session still holding procedures under
``{base}.consumer.<name>.`` or ``{base}.operator.<name>.`` keeps the name.

After a hub restart the registry is rebuilt from the router: every session
holding a registration under a name, and every name the authorizer
remembers (``{base}.authorizer.owned``), so a name a node only publishes
under is not handed to another session. Then ``{base}.hub.started`` is
published so running nodes re-add themselves with their descriptions.
"""

from __future__ import annotations

import functools
import inspect

from typing import Any, Awaitable, Callable, Iterable, TypeVar

from autobahn.twisted.component import Component
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions
from twisted.internet.defer import DeferredSemaphore, FirstError, ensureDeferred, gatherResults
from twisted.logger import Logger

from sisock.core.errors import SisockError
from sisock.core.protocol import valid_name
from sisock.site.settings import Settings
from sisock.wamp.shell import to_application_error

from .registry import Registry

log = Logger(namespace="sisock.hub")

#: Meta-API calls the hub keeps in flight at once while reading the router
#: (a rebuild asks two questions per registration: hundreds with 200 nodes).
META_CALLS_IN_FLIGHT = 64

K = TypeVar("K")


async def _ask_all(
    keys: Iterable[K], ask: Callable[[K], Awaitable[Any]], limit: int = META_CALLS_IN_FLIGHT
) -> dict[K, Any]:
    """``{key: await ask(key)}`` with at most ``limit`` questions in flight.

    One round trip per question in turn would cost a rebuild of 200 nodes
    seconds; the router answers them concurrently. ``ask`` handles its own
    expected errors; any other failure propagates.
    """
    keys = list(keys)
    sem = DeferredSemaphore(limit)
    try:
        answers = await gatherResults([sem.run(lambda k=k: ensureDeferred(ask(k))) for k in keys], consumeErrors=True)
    except FirstError as exc:  # the first failure as itself (e.g. TransportLost)
        exc.subFailure.raiseException()
    return dict(zip(keys, answers))


class Hub:
    """Hub RPC handlers bound to one WAMP session at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.uris = settings.uris
        self.registry = Registry()
        self.session = None
        self._reg_uris: dict[int, str] = {}  # registration id -> URI (they never change)
        self._rebuilding = False
        self._left_while_rebuilding: set[int] = set()

    @staticmethod
    def _caller(details, claimed: object) -> object:
        caller = getattr(details, "caller", None) if details is not None else None
        return caller if caller is not None else claimed

    # -- RPCs -------------------------------------------------------------
    def add(self, name, description, session_id=None, details=None) -> bool:
        """``data_node.add``: list ``name`` for the calling session."""
        if not valid_name(name):
            log.warn("refused data node name {name!r}: use letters, digits, '_' or '-'", name=name)
            return False
        caller = self._caller(details, session_id)
        ok, newly = self.registry.add(name, description if isinstance(description, str) else "", caller)
        if not ok:
            log.warn(
                "refused data node {name!r} for session {s}: owned by session {o}",
                name=name,
                s=caller,
                o=self.registry.owner(name),
            )
            return False
        if newly:
            log.info("added data node {name!r} (session {s})", name=name, s=caller)
            self.session.publish(self.uris.node_added, {"name": name, "description": self.registry.description(name)})
        return True

    async def subtract(self, name, session_id=None, details=None) -> None:
        """``data_node.subtract``: only an owning session may remove a name.

        The caller stops owning the name in this order: no claim of it is
        granted meanwhile, the router's authorizer forgets it, then the
        router's registrations are read. A caller still holding procedures
        under the name keeps it (the name is only unlisted), so no other
        session can be given a name whose procedures would still reach the
        old owner. Otherwise the name is free (or stays with the other
        replicas).
        """
        if not valid_name(name):
            return None
        caller = self._caller(details, session_id)
        if not self.registry.begin_release(name, caller):
            if self.registry.owner(name) is not None:
                log.warn("session {s} may not subtract {name!r}", s=caller, name=name)
            return None
        session = self.session
        try:
            await session.call(self.uris.authorizer_release, name, caller)
            still = caller in await self.holders(session, name)
        except Exception as exc:  # unsure what the router holds: keep the owner
            log.error(
                "subtract {name!r}: cannot ask the router ({exc}); session {s} keeps it", name=name, exc=exc, s=caller
            )
            still = True
        if session is not self.session:
            return None  # the hub rejoined meanwhile and rebuilt its registry
        entry = self.registry.finish_release(name, caller, still_registered=still)
        if still:
            log.warn(
                "session {s} still serves procedures under {name!r}: it keeps the name (unregister them first)",
                s=caller,
                name=name,
            )
        if entry is not None:
            log.info("subtracted data node {name!r}", name=name)
            session.publish(self.uris.node_subtracted, entry.public())
        return None

    async def holders(self, session, name: str) -> set[int]:
        """Sessions holding a registration under ``name`` (consumer or operator URIs).

        Reads the router's registrations (``wamp.registration.list``); the
        URI of each registration id is asked once and remembered, the
        questions asked concurrently.
        """
        prefixes = self.uris.owned_prefixes(name)
        regs = await session.call("wamp.registration.list")
        ids = [i for kind in ("exact", "prefix", "wildcard") for i in (regs or {}).get(kind, [])]
        uris = await _ask_all(ids, lambda i: self._registration_uri(session, i))
        mine = [i for i in ids if uris[i] is not None and uris[i].startswith(prefixes)]

        async def callees(reg_id: int) -> list:
            try:
                return await session.call("wamp.registration.list_callees", reg_id)
            except ApplicationError:  # gone since the list
                return []

        found: set[int] = set()
        for sessions in (await _ask_all(mine, callees)).values():
            found.update(sessions or ())
        for gone in set(self._reg_uris) - set(ids):
            del self._reg_uris[gone]
        return found

    async def _registration_uri(self, session, reg_id: int) -> str | None:
        uri = self._reg_uris.get(reg_id)
        if uri is None:
            try:
                info = await session.call("wamp.registration.get", reg_id)
            except ApplicationError:  # gone since the list
                return None
            uri = self._reg_uris[reg_id] = (info or {}).get("uri", "")
        return uri

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
        return self.registry.claim(
            name,
            self._caller(details, session),
            replica=bool(replica),
            authid=authid if isinstance(authid, str) else None,
        )

    def get_replicas(self) -> dict:
        """``consumer.get_replicas``: ``{name: number of sessions serving it}``."""
        return self.registry.replica_counts()

    def get_data_node(self) -> list:
        """``consumer.get_data_node``: the listed nodes."""
        return self.registry.listed()

    def on_leave(self, session_id) -> None:
        """``wamp.session.on_leave``: forget the names of a gone session."""
        if self._rebuilding:
            self._left_while_rebuilding.add(session_id)
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

        def bind(args, kwargs) -> None:
            try:
                sig.bind(*args, **kwargs)
            except TypeError:
                given = [k for k in kwargs if k != "details"]
                raise ApplicationError(
                    self.uris.error("bad_argument"),
                    f"{leaf} takes ({shown}), got {len(args)} positional argument(s)"
                    + (f" and keywords {sorted(given)}" if given else ""),
                ) from None

        def failed(exc: Exception) -> ApplicationError:
            if isinstance(exc, SisockError):
                return to_application_error(exc, self.settings.base_uri)
            log.failure("{leaf} failed", leaf=leaf)
            return ApplicationError(
                self.uris.error("internal"), f"{leaf} failed in the hub: {type(exc).__name__}: {exc}"
            )

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def rpc_async(*args, **kwargs):
                bind(args, kwargs)
                try:
                    return await fn(*args, **kwargs)
                except ApplicationError:
                    raise
                except Exception as exc:
                    raise failed(exc) from exc

            return rpc_async

        @functools.wraps(fn)
        def rpc(*args, **kwargs):
            bind(args, kwargs)
            try:
                return fn(*args, **kwargs)
            except ApplicationError:
                raise
            except Exception as exc:
                raise failed(exc) from exc

        return rpc

    # -- lifecycle --------------------------------------------------------
    async def rebuild(self, session) -> int:
        """Recover names from the router; return how many are listed again.

        Every session holding a registration under ``{base}.consumer.<name>.``
        or ``{base}.operator.<name>.``, and every session the authorizer
        remembers for a name, owns it again; a name with ``get_data``
        registered is listed, one served through shared registrations is
        replicated. Sessions that cannot all own a name (only possible
        after an inconsistency) keep the ``get_data`` callee's; the others
        are released in the authorizer, so it never grants more than the
        registry holds.
        """
        regs = await session.call("wamp.registration.list")
        holders: dict[str, dict[int, str | None]] = {}
        shared: set[str] = set()
        serving: dict[str, int] = {}

        async def describe(reg_id: int) -> tuple[dict, list] | None:
            try:
                info = await session.call("wamp.registration.get", reg_id)
                callees = await session.call("wamp.registration.list_callees", reg_id)
            except ApplicationError:  # gone since the list
                return None
            return info or {}, callees or []

        ids = [i for kind in ("exact", "prefix", "wildcard") for i in (regs or {}).get(kind, [])]
        for reg_id, found in (await _ask_all(ids, describe)).items():
            if found is None:
                continue
            info, callees = found
            uri = info.get("uri", "")
            self._reg_uris[reg_id] = uri
            name = self.uris.owned_name(uri)
            if name is None or not callees:
                continue
            if info.get("invoke", "single") != "single":
                shared.add(name)
            if uri == self.uris.get_data(name):
                serving[name] = callees[0]
            for callee in callees:
                holders.setdefault(name, {})[callee] = None
        callees_seen = {sid for sessions in holders.values() for sid in sessions}
        owned = await session.call(self.uris.authorizer_owned)
        unsure = {sid for sid, _, _, _ in owned if sid not in callees_seen}
        alive = await _ask_all(unsure, lambda sid: self._alive(session, sid))
        for sid, authid, name, replica in owned:
            if sid in unsure and not alive[sid]:
                continue  # a session that left just now is not restored
            holders.setdefault(name, {})[sid] = authid
            if replica:
                shared.add(name)
        missing = {sid for name in shared for sid, a in holders.get(name, {}).items() if a is None}
        authids = await _ask_all(missing, lambda sid: self._authid(session, sid))
        for name in shared:
            for sid in holders.get(name, {}):
                if holders[name][sid] is None:
                    holders[name][sid] = authids.get(sid)
        for name, sessions in holders.items():
            refused = self.registry.restore_members(
                name, sessions, replicable=name in shared, listed=name in serving, preferred=serving.get(name)
            )
            for sid in refused:
                log.warn(
                    "session {s} also held {name!r}, owned by session {o}: released",
                    s=sid,
                    name=name,
                    o=self.registry.owner(name),
                )
                await session.call(self.uris.authorizer_release, name, sid)
        return len(serving)

    @staticmethod
    async def _alive(session, session_id: int) -> bool:
        """True while the router knows the session (``wamp.session.get``)."""
        try:
            return bool(await session.call("wamp.session.get", session_id))
        except ApplicationError:
            return False

    @staticmethod
    async def _authid(session, session_id: int) -> str | None:
        """The authid of a running session (None if the router will not say)."""
        try:
            info = await session.call("wamp.session.get", session_id)
        except Exception:
            return None
        return (info or {}).get("authid")

    def _refusals_quietly(self, default):
        """``onUserError`` for the hub's session: a refusal with a sisock error (a caller
        over its limit of names, a bad argument) is logged at most once per 10 s with
        the number since; anything else as autobahn logs it."""
        from sisock.core.tally import Tally

        tally = Tally(10.0)

        def on_user_error(fail, msg):
            exc = getattr(fail, "value", fail)
            error = getattr(exc, "error", "")
            if isinstance(error, str) and error.startswith(self.uris.error("")):
                unsaid = tally.due()
                if unsaid is not None:
                    more = f" (and {unsaid} more refusals since the last one logged)" if unsaid else ""
                    log.info("refused: {why}{more}", why=exc.args[0] if exc.args else error, more=more)
                return None
            return default(fail, msg)

        return on_user_error

    async def on_join(self, session, details) -> None:
        """Follow session departures, rebuild, then register the RPCs and announce.

        Rebuilding before registering means no claim can slip in for a name
        a running node already serves.
        """
        self.session = session
        session.onUserError = self._refusals_quietly(session.onUserError)
        self.registry = Registry()
        self._reg_uris = {}
        self._rebuilding = True
        self._left_while_rebuilding = set()
        await session.subscribe(self.on_leave, "wamp.session.on_leave")
        try:
            found = await self.rebuild(session)
        finally:
            self._rebuilding = False
        for gone in self._left_while_rebuilding:  # left before rebuild saw them go
            self.on_leave(gone)
        opts = RegisterOptions(details_arg="details")
        checked = self._checked
        # asked together: after a router restart the router is busy admitting every
        # node again, and each round trip waits its turn
        procedures = [
            (checked(self.add, "data_node.add"), self.uris.add, opts),
            (checked(self.subtract, "data_node.subtract"), self.uris.subtract, opts),
            (checked(self.claim, "data_node.claim"), self.uris.claim, opts),
            (checked(self.get_data_node, "consumer.get_data_node"), self.uris.list_nodes, None),
            (checked(self.get_replicas, "consumer.get_replicas"), self.uris.list_replicas, None),
        ]
        await _ask_all(
            range(len(procedures)),
            lambda i: session.register(procedures[i][0], procedures[i][1], options=procedures[i][2]),
        )
        session.publish(self.uris.hub_started, {"session": details.session})
        log.info("hub ready (session {s}); {n} running data node(s) recovered", s=details.session, n=found)


def make_hub_component(component: Component, settings: Settings) -> Hub:
    """Attach a :class:`Hub` to ``component`` and return it."""
    hub = Hub(settings)
    component.on("join", hub.on_join)
    return hub
