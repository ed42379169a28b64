"""The web bridge's WAMP side: one consumer session, kept alive for ever.

:class:`Bridge` wraps a reconnecting component from
:func:`sisock.wamp.shell.make_component` (consumer credentials). On every join
it follows the hub's topics (``data_node_added`` / ``_subtracted`` /
``hub.started``) and re-subscribes the ``live`` topics someone listens
to; while the router is away :attr:`Bridge.connected` is False and calls
fail fast with a 503. Node calls ask for binary arrays and progressive
results and are reassembled into one :class:`~sisock.core.protocol.Result`; a sisock
0.x node that refuses ``encoding=`` is asked again with plain lists.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from autobahn.twisted.component import Component
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.types import CallOptions
from twisted.internet import defer
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger

from sisock.core import encoders
from sisock.core.protocol import Result
from sisock.core.tally import Tally
from sisock.consumer.calls import DataCall, NodeVersions, Parts, remote_error
from sisock.wamp.transport import message_limit
from sisock.site.settings import Settings
from sisock.wamp.shell import make_component
from .errors import WebError, too_much_from_node
from .limits import FairLimiter

log = Logger(namespace="sisock.web")

#: A listener of a node's live stream: ``listener(event, payload)`` with
#: event ``"data"`` (a JSON-ready ``get_data``-shaped dict), ``"gone"``
#: (the hub removed the node), ``"added"`` or ``"router"``
#: (``{"connected": bool}``).
Listener = Callable[[str, dict], None]

#: Calls to data nodes in flight at once, over every HTTP client.
MAX_NODE_CALLS = 8
#: Of which one HTTP request may hold at most this many.
MAX_NODE_CALLS_PER_REQUEST = 3
#: Whose turn a node call waits for: a client, or ``(client, request)``.
Turn = str | tuple[str, object]
#: Seconds the hub's node list is served without asking the hub again; its
#: ``data_node_added`` / ``_subtracted`` topics keep the list current meanwhile.
NODES_TTL = 5.0
#: Seconds the field-to-timeline map of a node is reused.
FIELDS_TTL = 60.0
#: Windows (seconds before now; None = all time) tried in turn to list a
#: node's fields when the caller gives no range: listing a long archive's
#: fields over all time can cost the node minutes and gigabytes.
RECENT_WINDOWS = (86400.0, 30 * 86400.0, None)


def _message_limit(session) -> int:
    """The largest message ``session``'s transport takes (told to nodes)."""
    return message_limit(getattr(session, "transport", None))


def live_json(payload: Any) -> dict | None:
    """A ``live`` topic payload (lists or binary envelopes) as JSON-ready lists.

    None when the payload is not a well-formed batch of samples: not a
    mapping, arrays that do not decode, times that are not numbers, or a
    field whose length matches none of the payload's timelines. Browsers
    then never receive values without their times.
    """
    if not isinstance(payload, dict):
        return None
    data, timeline = payload.get("data", {}), payload.get("timeline", {})
    if not isinstance(data, dict) or not isinstance(timeline, dict):
        return None
    try:
        result = Result.from_wire({"data": data, "timeline": timeline})
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        return None
    lengths = {len(tl.t) for tl in result.timelines.values()}
    if any(len(v) and len(v) not in lengths for v in result.data.values()):
        return None
    return encoders.lists(result)


class Bridge:
    """A consumer session shared by every HTTP request.

    Parameters
    ----------
    settings : Settings
        Router, realm, consumer credentials.
    component : Component, optional
        Built with :func:`sisock.wamp.shell.make_component` when omitted.
    call_timeout : float
        Seconds to wait for a node's answer.
    max_calls : int
        Calls to data nodes in flight at once; more wait, served in turn
        per client (:class:`~sisock.web.limits.FairLimiter`).
    """

    def __init__(
        self,
        settings: Settings,
        component: Component | None = None,
        call_timeout: float = 60.0,
        max_calls: int = MAX_NODE_CALLS,
    ) -> None:
        self.settings = settings
        self.uris = settings.uris
        self.component = component or make_component(settings)
        self.call_timeout = call_timeout
        self.limiter = FairLimiter(max_calls, MAX_NODE_CALLS_PER_REQUEST)
        self.session = None
        self.nodes: dict[str, str] = {}
        self.hub_seen = False
        self._listed_at: float | None = None  # monotonic time of the hub's last answer
        self._asking: list[defer.Deferred] | None = None  # callers sharing the call in flight
        self._listeners: dict[str, set[Listener]] = {}
        self._subs: dict[str, Any] = {}
        #: node -> (malformed live payloads not logged yet, when last logged)
        self._bad_live_seen: dict[str, Tally] = {}
        self._versions = NodeVersions()
        self._fields: dict[str, tuple[float, dict[str, dict]]] = {}
        self.component.on("join", lambda s, d: ensureDeferred(self._on_join(s, d)))
        self.component.on("leave", self._on_leave)

    # -- session ------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while the router session is up."""
        return self.session is not None

    async def _on_join(self, session, details) -> None:
        self.session = session
        await session.subscribe(self._on_added, self.uris.node_added)
        await session.subscribe(self._on_subtracted, self.uris.node_subtracted)
        # a restarted hub: ask it afresh (not an answer already in flight from before)
        await session.subscribe(
            lambda *a, **k: ensureDeferred(self._ask_hub()).addErrback(lambda _: None), self.uris.hub_started
        )
        self._subs.clear()
        for node in list(self._listeners):
            await self._subscribe_live(node)
        try:
            await self.refresh()
        except WebError as exc:  # no hub yet: keep the session, the topics will tell
            log.warn("{m}", m=exc.message)
        log.info("web bridge joined the router (session {s})", s=details.session)
        self._broadcast_all("router", {"connected": True})

    def _on_leave(self, session, details) -> None:
        if self.session is session:
            self.session = None
            self._listed_at = None  # topics may be missed while away: ask on return
            self._subs.clear()
            self._broadcast_all("router", {"connected": False})

    async def listed(self, max_age: float = NODES_TTL) -> list[dict]:
        """The listed nodes, sorted: the hub's answer, asked again when older than ``max_age`` s.

        Between two answers the hub's topics keep the list current, so a
        dashboard's or a script's ``GET /api/nodes`` costs no round trip
        to the hub however many ask.
        """
        self._need_session()
        if self.hub_seen and self._listed_at is not None and time.monotonic() - self._listed_at <= max_age:
            return [{"name": k, "description": v} for k, v in sorted(self.nodes.items())]
        return await self.refresh()

    async def refresh(self) -> list[dict]:
        """Ask the hub for its node list (kept in :attr:`nodes`).

        Callers arriving while a call is in flight share its answer.
        """
        if self._asking is not None:
            d: defer.Deferred = defer.Deferred()
            self._asking.append(d)
            return list(await d)
        self._asking = []
        try:
            answer = await self._ask_hub()
        except Exception as exc:
            waiting, self._asking = self._asking, None
            for d in waiting:
                d.errback(exc)
            raise
        waiting, self._asking = self._asking, None
        for d in waiting:
            d.callback(answer)
        return answer

    async def _ask_hub(self) -> list[dict]:
        session = self._need_session()
        try:
            listed = await self._timed(session.call(self.uris.list_nodes), 10)
        except ApplicationError as exc:
            if exc.error == "wamp.error.no_such_procedure":
                self.hub_seen = False
                raise WebError(
                    "router_unavailable",
                    "no hub is running on the router: the list of data nodes is unknown (start 'sisock hub')",
                ) from None
            raise
        self.hub_seen = True
        if session is self.session:
            self._listed_at = time.monotonic()
        self.nodes = {n["name"]: n.get("description", "") for n in listed}
        return [{"name": k, "description": v} for k, v in sorted(self.nodes.items())]

    def _on_added(self, info, *a, **k) -> None:
        if isinstance(info, dict) and "name" in info:
            self.nodes[info["name"]] = info.get("description", "")
            self._broadcast(info["name"], "added", dict(info))

    def _on_subtracted(self, info, *a, **k) -> None:
        if isinstance(info, dict) and "name" in info:
            self.nodes.pop(info["name"], None)
            self._fields.pop(info["name"], None)
            self._broadcast(info["name"], "gone", dict(info))

    def check_known(self, node: str) -> None:
        """Refuse a node the hub does not list, without asking the router.

        The list is the hub's, kept current by its topics; without a hub
        (sisock 0.x setups) every name is tried.

        Raises
        ------
        WebError
            404 ``not_found``.
        """
        if self.hub_seen and node not in self.nodes:
            raise WebError("not_found", f"no data node named {node!r} (see /api/nodes)")

    async def _node_call(self, client: Turn, uri: str, *args: Any, **kwargs: Any) -> Any:
        """One call to a data node, inside :attr:`limiter`, in ``client``'s turn."""
        session = self._need_session()
        who, request = client if isinstance(client, tuple) else (client, None)
        return await self.limiter.run(who, lambda: self._timed(session.call(uri, *args, **kwargs)), request)

    def _need_session(self):
        if self.session is None:
            raise WebError(
                "router_unavailable", f"not connected to the router at {self.settings.router_url}; retrying every 0.5 s"
            )
        return self.session

    async def _timed(self, d: defer.Deferred, timeout: float | None = None) -> Any:
        from twisted.internet import reactor

        d.addTimeout(self.call_timeout if timeout is None else timeout, reactor)
        try:
            return await d
        except defer.TimeoutError:
            waited = self.call_timeout if timeout is None else timeout
            raise WebError("timeout", f"no answer within {waited:g} s") from None
        except TransportLost:
            raise WebError("router_unavailable", "the router connection was lost during the call") from None

    def _node_error(self, node: str, exc: ApplicationError, rpc: str) -> WebError:
        if exc.error == "wamp.error.no_such_procedure":
            return WebError("not_found", f"no data node named {node!r} (see /api/nodes)")
        err = remote_error(self.uris.base, exc.error, exc.args, exc.kwargs)
        message = str(exc.args[0]) if exc.args else exc.error
        if err is None:
            return WebError("node_error", f"{rpc} on data node {node!r} failed: {message} [{exc.error}]")
        if err.kind == "bad_argument":
            return WebError("bad_argument", f"data node {node!r} refused the request: {err}")
        if err.kind == "too_much_data":
            return too_much_from_node(node, err.details)
        if err.kind == "not_found":
            return WebError("not_found", f"data node {node!r}: {err}")
        return WebError("node_error", f"{rpc} on data node {node!r} failed: {err} [{exc.error}]")

    # -- calls ----------------------------------------------------------------
    async def get_fields(self, node: str, start: float, end: float, client: Turn = "") -> tuple[dict, dict]:
        """``get_fields`` of ``node``: ``(field, timeline)``.

        ``client`` is whose turn the call waits for: the HTTP caller's
        address, or ``(address, request)``.
        """
        self.check_known(node)
        self._need_session()
        try:
            field, timeline = await self._node_call(client, self.uris.get_fields(node), start, end)
        except ApplicationError as exc:
            raise self._node_error(node, exc, "get_fields") from None
        self._fields[node] = (time.monotonic(), {**self._cached_fields(node), **field})
        return field, timeline

    async def recent_fields(self, node: str, client: Turn = "") -> tuple[dict, dict, float, float]:
        """Fields of ``node`` over the shortest of :data:`RECENT_WINDOWS` that has any.

        Returns ``(field, timeline, start, end)``.
        """
        now = time.time()
        for window in RECENT_WINDOWS:
            start = 1.0 if window is None else now - window
            field, timeline = await self.get_fields(node, start, now, client)
            if field:
                return field, timeline, start, now
        return {}, {}, 1.0, now

    def _cached_fields(self, node: str) -> dict[str, dict]:
        entry = self._fields.get(node)
        if entry is None or time.monotonic() - entry[0] > FIELDS_TTL:
            return {}
        return entry[1]

    async def field_info(
        self, node: str, fields: list[str], start: float, end: float, client: Turn = ""
    ) -> dict[str, dict]:
        """``get_fields`` info of ``fields`` (cached; fields never seen are left out).

        ``start`` and ``end`` are accepted for the signature's sake: the
        info is looked up over :meth:`recent_fields`' windows.
        """
        known = self._cached_fields(node)
        if not all(f in known for f in fields):
            try:  # a field's type, units and timeline do not depend on the range
                await self.recent_fields(node, client)
            except WebError as exc:
                if exc.error in ("router_unavailable", "not_found"):
                    raise
            known = self._cached_fields(node)
        return {f: known[f] for f in fields if f in known}

    async def get_data(
        self,
        node: str,
        fields: list[str],
        start: float,
        end: float,
        min_stride: float | None = None,
        method: str | None = None,
        stream: bool | None = None,
        client: Turn = "",
    ) -> Result:
        """Fetch samples as a :class:`~sisock.core.protocol.Result` (numpy arrays).

        Binary arrays and (with ``stream``) progressive results are asked
        for; the parts are reassembled in place. ``stream`` defaults to
        True only for downsampled queries, whose size ``min_stride``
        bounds: a full-resolution query travels as one message, so the
        node's single-reply limit refuses a huge one before it is read.
        """
        if stream is None:
            stream = min_stride is not None
        self.check_known(node)
        session = self._need_session()
        uri = self.uris.get_data(node)
        call = self._versions.call(
            node, DataCall(fields, start, end, min_stride, method, max_message_bytes=_message_limit(session))
        )
        parts = Parts()
        try:
            while True:
                options = (
                    CallOptions(on_progress=lambda part, *a, **k: parts.add(part))
                    if stream and not call.legacy
                    else None
                )
                try:
                    parts.add(await self._node_call(client, uri, *call.args, options=options, **call.kwargs))
                    break
                except ApplicationError as exc:
                    instead = self._versions.fallback(node, call, exc.error)
                    if instead is None:
                        raise
                    call, parts = instead, Parts()  # a sisock 0.x node: lists, no extensions
        except ApplicationError as exc:
            raise self._node_error(node, exc, "get_data") from None
        result = parts.result()
        await self._place_unsure(node, fields, start, end, result, client)
        return result

    async def _place_unsure(self, node, fields, start, end, result: Result, client: Turn = "") -> None:
        """Complete ``result.field_timeline`` from ``get_fields``.

        The node says which timeline each field is on (sisock binary
        replies), or :meth:`Result.from_wire <sisock.core.protocol.Result.from_wire>`
        matched lengths (0.x nodes); a field neither placed is looked up in
        the node's field list.
        """
        unsure = [f for f in fields if len(result.data.get(f, ())) and f not in result.field_timeline]
        if unsure:
            try:
                info = await self.field_info(node, unsure, start, end, client)
            except WebError:
                info = {}
            for f in unsure:
                tl = info.get(f, {}).get("timeline")
                if tl in result.timelines:
                    result.field_timeline[f] = tl

    # -- live -------------------------------------------------------------------
    async def listen(self, node: str, listener: Listener) -> Callable[[], None]:
        """Relay ``node``'s ``live`` topic to ``listener``; return the function that stops it."""
        first = node not in self._listeners
        self._listeners.setdefault(node, set()).add(listener)
        if first and self.session is not None:
            await self._subscribe_live(node)

        def stop() -> None:
            holders = self._listeners.get(node)
            if holders is None:
                return
            holders.discard(listener)
            if not holders:
                del self._listeners[node]
                sub = self._subs.pop(node, None)
                if sub is not None and self.session is not None:
                    d = defer.maybeDeferred(sub.unsubscribe)
                    d.addErrback(lambda _: None)

        return stop

    async def _subscribe_live(self, node: str) -> None:
        session = self.session
        if session is None or node in self._subs:
            return

        def on_live(payload=None, *a, **k) -> None:
            doc = live_json(payload)
            if doc is None:
                self._bad_live(node)
                return
            self._broadcast(node, "data", doc)

        self._subs[node] = await session.subscribe(on_live, self.uris.live(node))

    def _bad_live(self, node: str) -> None:
        """Count a malformed live payload of ``node``; log it once a minute per node."""
        unsaid = self._bad_live_seen.setdefault(node, Tally(60.0)).due()
        if unsaid is not None:
            log.warn(
                "dropped {n} malformed live payload(s) from node {node!r} (values without matching times)",
                n=unsaid + 1,
                node=node,
            )

    def _broadcast(self, node: str, event: str, payload: dict) -> None:
        for listener in list(self._listeners.get(node, ())):
            try:
                listener(event, payload)
            except Exception:
                log.failure("live listener failed")

    def _broadcast_all(self, event: str, payload: dict) -> None:
        for node in list(self._listeners):
            self._broadcast(node, event, payload)
