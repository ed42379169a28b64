"""Live streams of the web bridge: Server-Sent Events over one or many nodes.

``GET /api/live?nodes=a,b`` is one stream for a whole page, multiplexed
over the nodes it names: every ``data`` event carries ``"node"``, so a
page holds one HTTP connection however many nodes it shows (a browser
allows six per host over HTTP/1.1, counted across its tabs).
``GET /api/live?node=N`` is the single-node form of earlier releases;
its events are unchanged (``data`` has no ``"node"`` member).

Events (``event:`` name, ``data:`` JSON):

``hello``     ``{"nodes": [...], "connected": bool}`` (single form: ``{"node", "connected"}``)
``data``      ``{"node", "data", "timeline"}`` in ``get_data`` shape
``gone``      the hub removed the node (``{"name", ...}``)
``missing``   a node named in ``nodes=`` that the hub does not list (``{"name"}``)
``added``     the hub (re)listed the node
``router``    ``{"connected": bool}``: the bridge lost or regained the router
``dropped``   ``{"node", "samples"}``: samples left out because the reader was slow

Backpressure: each stream is a push producer of its HTTP connection.
While the connection's send buffer is full (the reader stalls), events
are not written: ``data`` events are coalesced per node into one pending
event holding at most :data:`MAX_PENDING_SAMPLES` samples per timeline
(the oldest are dropped and counted), and other events keep only the
newest per node and name. When the reader catches up the pending events
are written, followed by ``dropped`` when samples were left out, so the
page can re-query that span. A stalled reader therefore costs the bridge
a bounded amount of memory.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer

from .errors import WebError, bad
from .params import parse_node

log = Logger(namespace="sisock.web")

#: Seconds between SSE keep-alive comments (proxies drop idle streams).
KEEPALIVE = 15.0
#: Most samples per node and timeline held for a reader that stalls.
MAX_PENDING_SAMPLES = 2000
#: Most nodes one multiplexed stream may name.
MAX_NODES = 200


def parse_nodes(args: dict[str, str]) -> tuple[list[str], bool]:
    """The nodes a live request names, and whether it is the multiplexed form.

    Parameters
    ----------
    args : dict
        The query arguments (``node`` or ``nodes``).

    Returns
    -------
    nodes : list of str
        Node names, in order, without repeats.
    multi : bool
        True for ``nodes=`` (events name their node).
    """
    if args.get("nodes") is not None:
        names = [n.strip() for n in args["nodes"].split(",") if n.strip()]
        if not names:
            raise bad("argument 'nodes' must name at least one data node (nodes=a,b)")
        if len(names) > MAX_NODES:
            raise bad(f"argument 'nodes' names {len(names)} nodes; at most {MAX_NODES}")
        out: list[str] = []
        for n in names:
            n = parse_node(n)
            if n not in out:
                out.append(n)
        return out, True
    return [parse_node(args.get("node"))], False


def _merge(into: dict, more: dict, cap: int) -> int:
    """Append ``more``'s samples to the pending event ``into``; keep at most ``cap``.

    Both are ``{"data": {field: list}, "timeline": {name: {"t": list, ...}}}``.
    Returns how many samples (per timeline, summed) were dropped.
    """
    owner: dict[str, str] = {}
    for name, tl in more.get("timeline", {}).items():
        n = len(tl.get("t", []))
        for f, v in more.get("data", {}).items():
            if len(v) == n:
                owner.setdefault(f, name)
    dropped = 0
    for name, tl in more.get("timeline", {}).items():
        have = into["timeline"].setdefault(name, {"t": [], "finalized_until": None})
        have["t"] = list(have["t"]) + list(tl.get("t", []))
        if tl.get("finalized_until") is not None:
            have["finalized_until"] = tl["finalized_until"]
    for f, v in more.get("data", {}).items():
        into["data"][f] = list(into["data"].get(f, [])) + list(v)
    for name, tl in into["timeline"].items():
        extra = len(tl["t"]) - cap
        if extra > 0:
            tl["t"] = tl["t"][extra:]
            dropped += extra
            for f, v in list(into["data"].items()):
                if owner.get(f, name) == name and len(v) == len(tl["t"]) + extra:
                    into["data"][f] = v[extra:]
    return dropped


@implementer(IPushProducer)
class LiveStream:
    """One SSE connection relaying one or more nodes, with bounded buffering.

    Parameters
    ----------
    write : callable
        Writes bytes to the connection.
    nodes : list of str
        The nodes relayed.
    multi : bool
        Multiplexed form (``data`` events carry ``"node"``).
    cap : int
        Most samples per node and timeline held while the reader stalls.
    """

    def __init__(
        self, write: Callable[[bytes], None], nodes: list[str], multi: bool, cap: int = MAX_PENDING_SAMPLES
    ) -> None:
        self.write = write
        self.nodes = nodes
        self.multi = multi
        self.cap = cap
        self.paused = False
        self.closed = False
        #: Pending events while paused: key -> (event, payload); data keyed by node.
        self.pending: dict[tuple[str, str], tuple[str, dict]] = {}
        #: Samples dropped per node since the last ``dropped`` event.
        self.dropped: dict[str, int] = {}
        #: Totals, for tests and status.
        self.sent_events = 0
        self.total_dropped = 0

    # -- IPushProducer ----------------------------------------------------
    def pauseProducing(self) -> None:
        """The connection's send buffer is full: hold events from now on."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The reader caught up: write what was held."""
        self.paused = False
        self.flush()

    def stopProducing(self) -> None:
        """The connection is going away."""
        self.closed = True
        self.pending.clear()

    # -- events -------------------------------------------------------------
    def emit(self, node: str, event: str, payload: dict) -> None:
        """Send (or, while paused, hold) one event about ``node``."""
        if self.closed:
            return
        if event == "data" and self.multi:
            payload = {"node": node, **payload}
        if not self.paused:
            self._send(event, payload)
            return
        key = (node, event)
        if event == "data":
            held = self.pending.get(key)
            if held is None:
                held = ("data", {**({"node": node} if self.multi else {}), "data": {}, "timeline": {}})
                self.pending[key] = held
            lost = _merge(held[1], payload, self.cap)
            if lost:
                self.dropped[node] = self.dropped.get(node, 0) + lost
                self.total_dropped += lost
        else:
            self.pending.pop(key, None)  # keep the order: newest last
            self.pending[key] = (event, payload)

    def flush(self) -> None:
        """Write held events (oldest first), then ``dropped`` notices."""
        while self.pending and not self.paused and not self.closed:
            key = next(iter(self.pending))
            event, payload = self.pending.pop(key)
            self._send(event, payload)
        if not self.paused and not self.closed:
            for node, n in list(self.dropped.items()):
                self._send("dropped", {"node": node, "samples": n})
            self.dropped.clear()

    def ping(self) -> None:
        """A keep-alive comment (skipped while the reader stalls)."""
        if not self.paused and not self.closed:
            self.write(b": keep-alive\n\n")

    def pending_samples(self) -> int:
        """Samples held for this reader (bounded by ``cap`` per node and timeline)."""
        return sum(
            len(tl["t"]) for (_, ev), (_, p) in self.pending.items() if ev == "data" for tl in p["timeline"].values()
        )

    def _send(self, event: str, payload: dict) -> None:
        data = json.dumps(payload, separators=(",", ":"), allow_nan=False)
        self.sent_events += 1
        self.write(f"event: {event}\ndata: {data}\n\n".encode())


class LiveStreams:
    """Every live stream of the bridge, and the route handler that opens them.

    Parameters
    ----------
    bridge : Bridge
        The consumer session (node list, ``listen``).
    """

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self.streams: set[LiveStream] = set()
        self._keepalive = LoopingCall(self._ping)

    def start(self) -> None:
        """Start the keep-alive timer (call once the reactor runs)."""
        if not self._keepalive.running:
            self._keepalive.start(KEEPALIVE, now=False)

    def _ping(self) -> None:
        for s in list(self.streams):
            s.ping()

    async def serve(self, request: Any, args: dict[str, str]) -> None:
        """Answer ``GET /api/live`` with an event stream (kept open).

        Parameters
        ----------
        request : twisted.web.server.Request
            The request; it is finished when the client goes away.
        args : dict
            Query arguments (``node`` or ``nodes``).
        """
        nodes, multi = parse_nodes(args)
        bridge = self.bridge
        if not bridge.connected:
            raise WebError("router_unavailable", "not connected to the router; retry later")
        missing: list[str] = []
        if bridge.hub_seen and any(n not in bridge.nodes for n in nodes):
            await bridge.refresh()
            missing = [n for n in nodes if n not in bridge.nodes]
            if missing and not multi:
                raise WebError("not_found", f"no data node named {nodes[0]!r} (see /api/nodes)")
        request.setResponseCode(200)
        request.setHeader("content-type", "text/event-stream; charset=utf-8")
        request.setHeader("cache-control", "no-store")
        request.setHeader("x-accel-buffering", "no")  # nginx: do not buffer the stream

        def write(data: bytes) -> None:
            if not getattr(request, "_sisock_gone", False):
                request.write(data)

        stream = LiveStream(write, nodes, multi)
        stops = []
        for node in nodes:
            stops.append(await bridge.listen(node, lambda event, payload, node=node: stream.emit(node, event, payload)))
        self.streams.add(stream)
        request.registerProducer(stream, True)
        if getattr(getattr(request, "channel", None), "_waitingForTransport", False):
            stream.pauseProducing()

        def closed(_: Any) -> None:
            stream.stopProducing()
            for stop in stops:
                stop()
            self.streams.discard(stream)

        request.notifyFinish().addBoth(closed)
        write(b"retry: 2000\n\n")
        if multi:
            stream._send("hello", {"nodes": nodes, "connected": bridge.connected})
            for node in missing:
                stream._send("missing", {"name": node})
        else:
            stream._send("hello", {"node": nodes[0], "connected": bridge.connected})
