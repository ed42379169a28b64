"""Run a data node: a plain Python object served over WAMP.

A node *core* is any object with ``name``, ``description`` and two
blocking methods (the contract is in :mod:`sisock.core.contract`); it knows nothing
about WAMP. Call checking and reply shapes live in :mod:`sisock.core.protocol`.
:class:`NodeService` wires a core to a reconnecting
:class:`autobahn.twisted.component.Component`:

1. on every join it calls ``data_node.add`` (retrying briefly while the
   hub starts or an old session of the same name is still leaving);
2. registers ``{base}.consumer.<name>.get_fields`` and ``.get_data``,
   which run the core in a thread and translate
   :class:`~sisock.core.errors.SisockError` into WAMP errors;
3. re-adds itself whenever the hub announces ``{base}.hub.started``;
4. offers :meth:`NodeService.publish_live` for live samples.

A *replica* (``replica=True``) registers its procedures as WAMP shared
registrations (``invoke="roundrobin"``), so several processes serving the
same archive share one name and the router balances calls between them.
"""

from __future__ import annotations


from autobahn.twisted.component import Component
from autobahn.twisted.util import sleep
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions
from twisted.internet import threads
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.logger import Logger

from sisock.core import budget, protocol, wire
from sisock.core.contract import DataCore, offers_writes
from sisock.core.errors import SisockError, TooMuchData
from sisock.core.protocol import GetData, Result
from sisock.site.settings import Settings
from .sending import DirectSend, Reading, ReferenceSend, WriteGate
from .shell import make_component, to_application_error

log = Logger(namespace="sisock.wamp.service")

#: How long a node keeps asking for a name held by another session.
ADD_RETRY_SECONDS = 5.0

#: While no hub runs, how often a node asks again if it missed the hub's
#: ``hub.started`` announcement (it normally retries as soon as the hub says so).
HUB_POLL_SECONDS = 2.0

#: The router's invocation policy for replicas' shared registrations.
REPLICA_INVOKE = "roundrobin"


class NodeService:
    """Serve one data core through a WAMP component.

    Parameters
    ----------
    node : DataCore
        The core (:mod:`sisock.core.contract` states the contract).
    settings : Settings
        Router, realm and credentials (role ``server``).
    component : Component, optional
        Built with :func:`sisock.wamp.shell.make_component` when omitted.
    replica : bool
        Serve the name as one of several replicas (shared registration).
    threadpool : twisted.python.threadpool.ThreadPool, optional
        Where the core's blocking calls run (default: the reactor's pool).
        A process hosting several nodes gives each its own
        (:mod:`sisock.wamp.host`), so a core that blocks holds up only
        its own calls.
    """

    def __init__(
        self,
        node: DataCore,
        settings: Settings,
        component: Component | None = None,
        replica: bool = False,
        threadpool=None,
    ) -> None:
        protocol.check_name(node.name)
        self.node = node
        self.uris = settings.uris
        self.settings = settings
        self.component = component or make_component(settings, streams_big_replies=True)
        self.session = None
        self.listed = False
        self.failed = False
        self.chunk_bytes = wire.CHUNK_BYTES
        self.replica = replica
        self.threadpool = threadpool
        self._gate: WriteGate | None = None
        #: ``hub.started`` announcements seen, and who waits for the next one.
        self._hub_starts = 0
        self._hub_waiters: list[Deferred] = []
        #: Limit of one live publication (subscribers' clients may be ApplicationRunners).
        self.live_message_bytes = budget.DEFAULT_MESSAGE_BYTES
        self._live_too_big_logged = False
        #: Operator writes (``{base}.operator.<name>.*``) when the core offers them.
        self.operator = None
        if not replica and offers_writes(node):
            from .operator import OperatorService

            self.operator = OperatorService(self)
        self.component.on("join", lambda s, d: ensureDeferred(self._on_join(s, d)))
        self.component.on("leave", self._on_leave)

    def uri(self, leaf: str) -> str:
        """``{base}.consumer.<name>.<leaf>``."""
        return self.uris.node(self.node.name, leaf)

    def in_thread(self, fn, *args, **kwargs) -> Deferred:
        """Run ``fn(*args, **kwargs)`` in this node's thread pool (a Deferred of its result)."""
        if self.threadpool is None:
            return threads.deferToThread(fn, *args, **kwargs)
        from twisted.internet import reactor

        return threads.deferToThreadPool(reactor, self.threadpool, fn, *args, **kwargs)

    # -- RPCs -------------------------------------------------------------
    def _wamp_error(self, exc: Exception, rpc: str) -> ApplicationError:
        """Every failure leaves as ``{base}.error.*`` with a readable message."""
        if isinstance(exc, SisockError):
            return to_application_error(exc, self.settings.base_uri)
        log.failure("{rpc} failed", rpc=rpc)
        return ApplicationError(
            self.uris.error("internal"), f"{rpc} failed on node {self.node.name!r}: {type(exc).__name__}: {exc}"
        )

    async def get_fields(self, *args, **kwargs):
        """``get_fields(start, end) -> [field, timeline]``."""
        try:
            start, end = protocol.parse_get_fields(args, kwargs)
            field, timeline = await self.in_thread(self.node.get_fields, start, end)
            return [field, timeline]
        except Exception as exc:
            raise self._wamp_error(exc, "get_fields") from exc

    async def get_data(self, *args, details=None, **kwargs):
        """``get_data(field, start, end, min_stride=None, **ext)``.

        Extensions: ``method`` (downsampling method) and ``encoding``
        (``"binary"`` for raw little-endian arrays, see :mod:`sisock.core.wire`).
        A binary reply larger than :data:`sisock.core.wire.CHUNK_BYTES` goes out
        as progressive results when the caller asked for them.
        """
        try:
            call = protocol.parse_get_data(args, kwargs)
            streaming = call.encoding == "binary" and details is not None and bool(getattr(details, "progress", None))
            result, reply, part = await self.in_thread(self._query, call, streaming)
            if reply is None:
                return await self._stream(result, details.progress, part)
            return reply
        except Exception as exc:
            raise self._wamp_error(exc, "get_data") from exc

    def _query(self, call: GetData, streaming: bool) -> tuple[Result, dict | None, int]:
        """Worker thread: query the core and encode the reply off the reactor.

        Returns ``(result, reply, part_bytes)``; ``reply`` is None when the
        result is to be streamed in parts of ``part_bytes`` (encoded part by
        part as they are sent). Every message fits the caller's ``limit``
        in bytes, whatever the serializer (:mod:`sisock.core.budget`).
        """
        result = Result.coerce(
            self.node.get_data(call.fields, call.start, call.end, call.min_stride, call.method, streaming=streaming)
        )
        reply, part = budget.plan_reply(
            result,
            call.start,
            call.end,
            call.max_message_bytes,
            call.encoding,
            streaming,
            call.method,
            self.chunk_bytes,
        )
        if reply is not None:
            self._check_one_message(reply, result, call)
        return result, reply, part

    def _check_one_message(self, reply: dict, result: Result, call: GetData) -> None:
        """Refuse a one-message reply that our RawSocket connection cannot carry.

        Over RawSocket a message is at most 16 MiB; autobahn would drop a
        larger reply and the caller would wait for its timeout. Runs in the
        worker thread; measures only replies that could be that large.
        """
        from .transport import RAWSOCKET_MAX_MESSAGE, message_limit

        if message_limit(getattr(self.session, "transport", None)) != RAWSOCKET_MAX_MESSAGE:
            return

        values = sum(len(v) if isinstance(v, list) else 0 for v in reply["data"].values())
        values += sum(len(tl["t"]) if isinstance(tl["t"], list) else 0 for tl in reply["timeline"].values())
        rough = 9 * values + sum(len(v["data"]) for v in _envelopes(reply))
        if rough < RAWSOCKET_MAX_MESSAGE // 2:
            return
        import msgpack

        size = len(msgpack.packb(reply, use_bin_type=True))
        if size > RAWSOCKET_MAX_MESSAGE - 4096:
            limit = RAWSOCKET_MAX_MESSAGE - 4096
            stride = budget.suggest_min_stride(result, call.start, call.end, limit, call.encoding, call.method)
            raise TooMuchData(
                f"the reply is {size / 2**20:.1f} MiB, more than the "
                f"{RAWSOCKET_MAX_MESSAGE // 2**20} MiB one message can carry from node "
                f"{self.node.name!r} (it speaks RawSocket): pass min_stride >= {stride:g} s, "
                "ask for a streamed binary reply (the sisock client does) or a shorter range",
                min_stride=stride,
                max_message_bytes=limit,
            )

    async def _stream(self, result: Result, progress, chunk_bytes: int | None = None) -> dict:
        """Send all but the last part as progressive results; return the last.

        A progressive result (raw archive rows still being read) is read in
        a worker thread while the parts already read are sent: reading and
        sending overlap, and the first part leaves as soon as its rows are
        in place. A part is sent only when the connection's write buffer
        has drained (a Twisted push producer), so the buffer never has to
        join megabytes at once. With msgpack the parts point into the
        result's arrays instead of copying them, and over RawSocket on plain
        TCP those arrays go to the kernel where they lie
        (:class:`~sisock.wamp.sending.ReferenceSend`); the last part, sent
        by autobahn after the call returns, is a plain msgpack one.
        """
        session = self.session
        details = getattr(session, "session_details", None)
        zero_copy = str(getattr(details, "serializer", "") or "").startswith("msgpack")
        gate = self._write_gate(session)
        connection = getattr(session, "transport", None)
        by_reference = zero_copy and isinstance(getattr(connection, "__dict__", {}).get("send"), ReferenceSend)
        reading = Reading(result, self.in_thread)
        try:
            ranges, rest = wire.split_plan(result, chunk_bytes or self.chunk_bytes)
            for r in ranges[:-1]:
                await reading.until(r.timeline, r.i1)
                # only the connection that packs ByReference itself may get one
                same = by_reference and getattr(self.session, "transport", None) is connection
                progress(wire.make_part(result, r, zero_copy, same))
                if gate is not None and gate.paused:
                    await gate.wait()
                else:
                    await sleep(0)  # let the reactor flush the socket between parts
            await reading.until_complete()
        finally:
            await reading.stop()
        last = wire.finish_last(result, wire.make_part(result, ranges[-1], zero_copy) if ranges else None, rest)
        last["field_timeline"] = dict(result.field_timeline)
        return last

    def _write_gate(self, session) -> "WriteGate | None":
        """The flow-control gate of ``session``'s connection (one per connection)."""
        connection = getattr(session, "transport", None)
        transport = getattr(connection, "transport", None)
        if transport is None or not hasattr(transport, "registerProducer"):
            return None
        if self._gate is None or self._gate.transport is not transport:
            # Parts leave as soon as their rows are read, with pauses between
            # them: without TCP_NODELAY the tail of each part would wait for
            # the router's delayed ACK (40 ms) before it leaves (Nagle).
            set_nodelay = getattr(transport, "setTcpNoDelay", None)
            if set_nodelay is not None:
                set_nodelay(True)
            DirectSend.install(connection, transport)
            ReferenceSend.install(connection)
            try:
                self._gate = WriteGate(transport)
            except RuntimeError:  # someone else produces on this connection
                return None
        return self._gate

    # -- live -------------------------------------------------------------
    def publish_live(self, result: Result) -> bool:
        """Publish new samples (``get_data`` shape, JSON lists) on ``<name>.live``.

        Returns False when not connected (the samples stay in the core).
        """
        if self.session is None or not self.listed:
            return False
        try:
            for payload in budget.split_live(Result.coerce(result), self.live_message_bytes):
                self.session.publish(self.uri("live"), payload)
        except SisockError as exc:
            if not self._live_too_big_logged:
                log.error("live sample of {name!r} not published: {e}", name=self.node.name, e=exc)
                self._live_too_big_logged = True
        return True

    # -- lifecycle --------------------------------------------------------
    async def add(self, session) -> bool | None:
        """Call ``data_node.add``; None while no hub is running."""
        try:
            return bool(await session.call(self.uris.add, self.node.name, self.node.description, session.session_id))
        except ApplicationError as exc:
            if exc.error == "wamp.error.no_such_procedure":
                return None
            raise

    async def claim(self, session) -> bool | None:
        """Call ``data_node.claim`` (reserve our name); None while no hub is running."""
        extra = {"replica": True} if self.replica else {}
        try:
            return bool(await session.call(self.uris.claim, self.node.name, session.session_id, **extra))
        except ApplicationError as exc:
            if exc.error == "wamp.error.no_such_procedure":
                return None
            raise

    async def _register(self, session) -> bool:
        """Register our procedures, then get listed by the hub.

        Registering first means a listed node always answers. The router
        refuses the registration while another session owns the name, or
        while no hub runs to say who owns it: we then claim the name from
        the hub directly (without being listed), wait for the hub if it is
        absent, and give up after
        ``ADD_RETRY_SECONDS`` if the name stays taken.

        Without a hub the node waits for its ``hub.started`` announcement
        (asking again every :data:`HUB_POLL_SECONDS` in case it missed
        it) instead of retrying four times a second: after a router restart
        hundreds of nodes may be back before the hub, and each retry costs
        the router an authorization and a refusal.
        """
        taken_for = 0.0
        hub_missing_logged = False
        invoke = REPLICA_INVOKE if self.replica else None
        procedures = [
            (self.get_fields, "get_fields", RegisterOptions(invoke=invoke)),
            (self.get_data, "get_data", RegisterOptions(details_arg="details", invoke=invoke)),
        ]
        done: set[str] = set()  # registered already (a retry must not repeat them)
        while True:
            starts = self._hub_starts
            try:
                for fn, leaf, options in procedures:
                    if leaf not in done:
                        await session.register(fn, self.uri(leaf), options=options)
                        done.add(leaf)
                break
            except ApplicationError as exc:
                if exc.error not in (
                    "wamp.error.not_authorized",
                    "wamp.error.procedure_already_exists",
                    ApplicationError.PROCEDURE_EXISTS_INVOCATION_POLICY_CONFLICT,
                ):
                    raise
            ok = await self.claim(session)
            if ok is None:
                if not hub_missing_logged:
                    log.warn("no hub is running yet; waiting for it")
                    hub_missing_logged = True
                await self._hub_started_since(starts)
                continue
            if not ok:
                if taken_for >= ADD_RETRY_SECONDS:
                    return False
                taken_for += 0.25
            await sleep(0.25)
        if self.operator is not None:
            await self.operator.register(session)
        while True:
            starts = self._hub_starts
            ok = await self.add(session)
            if ok is not None:
                return ok
            await self._hub_started_since(starts)

    def _hub_started_since(self, starts: int) -> Deferred:
        """Fires when the hub announced itself after ``starts`` announcements,
        or after :data:`HUB_POLL_SECONDS` at the latest."""
        if self._hub_starts != starts:
            return succeed(None)
        from twisted.internet import reactor

        d: Deferred = Deferred()
        self._hub_waiters.append(d)
        timer = reactor.callLater(HUB_POLL_SECONDS, lambda: d.called or d.callback(None))
        d.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])
        return d

    def _on_hub_started(self, session) -> Deferred:
        """``hub.started``: wake whoever waits for a hub, and re-add our name."""
        self._hub_starts += 1
        waiters, self._hub_waiters = self._hub_waiters, []
        for d in waiters:
            if not d.called:
                d.callback(None)
        return ensureDeferred(self._readd(session))

    async def _on_join(self, session, details) -> None:
        self.session = session
        await session.subscribe(lambda *a, **k: self._on_hub_started(session), self.uris.hub_started)
        if not await self._register(session):
            log.error("data node name {name!r} is already served by another session; not serving", name=self.node.name)
            self.session = None
            self.failed = True
            session.leave()
            self.component.stop()
            return
        self.listed = True
        log.info("serving data node {name!r} (session {s})", name=self.node.name, s=details.session)

    async def _readd(self, session) -> None:
        if session is self.session and self.listed:
            if await self.add(session) is False:
                log.error("the restarted hub refused our name {name!r}", name=self.node.name)

    def _on_leave(self, session, details) -> None:
        self.session = None
        self.listed = False


def _envelopes(reply: dict):
    """The binary envelopes of a ``get_data`` reply."""
    for v in list(reply["data"].values()) + [tl["t"] for tl in reply["timeline"].values()]:
        if isinstance(v, dict) and v.get(wire.ENVELOPE_KEY):
            yield v


def run_nodes(services: list[NodeService], log_level: str = "info") -> None:
    """Start the reactor with every service's component (blocks)."""
    from .shell import run_components

    run_components([s.component for s in services], log_level)
