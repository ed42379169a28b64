"""Run a data node: a plain Python object served over WAMP.

A node *core* is any object with ``name``, ``description`` and two
blocking methods (the contract is in :mod:`sisock.core`); it knows nothing
about WAMP. Call checking and reply shapes live in :mod:`sisock.protocol`.
:class:`NodeService` wires a core to a reconnecting
:class:`autobahn.twisted.component.Component`:

1. on every join it calls ``data_node.add`` (retrying briefly while the
   hub starts or an old session of the same name is still leaving);
2. registers ``{base}.consumer.<name>.get_fields`` and ``.get_data``,
   which run the core in a thread and translate
   :class:`~sisock.errors.SisockError` into WAMP errors;
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
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger

from . import protocol, wire
from .core import DataCore
from .errors import SisockError
from .protocol import GetData, Result
from .settings import Settings
from .wamp import make_component, to_application_error

log = Logger(namespace="sisock.node")

#: How long a node keeps asking for a name held by another session.
ADD_RETRY_SECONDS = 5.0

#: The router's invocation policy for replicas' shared registrations.
REPLICA_INVOKE = "roundrobin"


class NodeService:
    """Serve one data core through a WAMP component.

    Parameters
    ----------
    node : DataCore
        The core (:mod:`sisock.core` states the contract).
    settings : Settings
        Router, realm and credentials (role ``server``).
    component : Component, optional
        Built with :func:`sisock.wamp.make_component` when omitted.
    replica : bool
        Serve the name as one of several replicas (shared registration).
    """

    def __init__(self, node: DataCore, settings: Settings,
                 component: Component | None = None, replica: bool = False) -> None:
        protocol.check_name(node.name)
        self.node = node
        self.uris = settings.uris
        self.settings = settings
        self.component = component or make_component(settings)
        self.session = None
        self.listed = False
        self.failed = False
        self.chunk_bytes = wire.CHUNK_BYTES
        self.replica = replica
        self.component.on("join", lambda s, d: ensureDeferred(self._on_join(s, d)))
        self.component.on("leave", self._on_leave)

    def uri(self, leaf: str) -> str:
        """``{base}.consumer.<name>.<leaf>``."""
        return self.uris.node(self.node.name, leaf)

    # -- RPCs -------------------------------------------------------------
    def _wamp_error(self, exc: Exception, rpc: str) -> ApplicationError:
        """Every failure leaves as ``{base}.error.*`` with a readable message."""
        if isinstance(exc, SisockError):
            return to_application_error(exc, self.settings.base_uri)
        log.failure("{rpc} failed", rpc=rpc)
        return ApplicationError(self.uris.error("internal"),
                                f"{rpc} failed on node {self.node.name!r}: "
                                f"{type(exc).__name__}: {exc}")

    async def get_fields(self, *args, **kwargs):
        """``get_fields(start, end) -> [field, timeline]``."""
        try:
            start, end = protocol.parse_get_fields(args, kwargs)
            field, timeline = await threads.deferToThread(self.node.get_fields, start, end)
            return [field, timeline]
        except Exception as exc:
            raise self._wamp_error(exc, "get_fields") from exc

    async def get_data(self, *args, details=None, **kwargs):
        """``get_data(field, start, end, min_stride=None, **ext)``.

        Extensions: ``method`` (downsampling method) and ``encoding``
        (``"binary"`` for raw little-endian arrays, see :mod:`sisock.wire`).
        A binary reply larger than :data:`sisock.wire.CHUNK_BYTES` goes out
        as progressive results when the caller asked for them.
        """
        try:
            call = protocol.parse_get_data(args, kwargs)
            streaming = call.encoding == "binary" and details is not None and bool(
                getattr(details, "progress", None))
            result, reply = await threads.deferToThread(self._query, call, streaming)
            if reply is None:
                return await self._stream(result, details.progress)
            return reply
        except Exception as exc:
            raise self._wamp_error(exc, "get_data") from exc

    def _query(self, call: GetData, streaming: bool) -> tuple[Result, dict | None]:
        """Worker thread: query the core and encode the reply off the reactor.

        Returns ``(result, reply)``; ``reply`` is None when the result is
        to be streamed in parts (encoded part by part as they are sent).
        """
        result = Result.coerce(self.node.get_data(
            call.fields, call.start, call.end, call.min_stride, call.method,
            streaming=streaming))
        if streaming and wire.reply_nbytes(_arrays(result)) > self.chunk_bytes:
            return result, None
        return result, result.to_wire(call.encoding)

    async def _stream(self, result: Result, progress) -> dict:
        """Send all but the last part as progressive results; return the last."""
        last = None
        for part in wire.chunk_reply(_arrays(result), self.chunk_bytes):
            if last is not None:
                progress(last)
                await sleep(0)  # let the reactor flush the socket between parts
            last = part
        last["field_timeline"] = dict(result.field_timeline)
        return last

    # -- live -------------------------------------------------------------
    def publish_live(self, result: Result) -> bool:
        """Publish new samples (``get_data`` shape, JSON lists) on ``<name>.live``.

        Returns False when not connected (the samples stay in the core).
        """
        if self.session is None or not self.listed:
            return False
        self.session.publish(self.uri("live"), Result.coerce(result).to_wire())
        return True

    # -- lifecycle --------------------------------------------------------
    async def add(self, session) -> bool | None:
        """Call ``data_node.add``; None while no hub is running."""
        try:
            return bool(await session.call(
                self.uris.add, self.node.name,
                self.node.description, session.session_id))
        except ApplicationError as exc:
            if exc.error == "wamp.error.no_such_procedure":
                return None
            raise

    async def claim(self, session) -> bool | None:
        """Call ``data_node.claim`` (reserve our name); None while no hub is running."""
        extra = {"replica": True} if self.replica else {}
        try:
            return bool(await session.call(
                self.uris.claim, self.node.name, session.session_id, **extra))
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
        """
        taken_for = 0.0
        hub_missing_logged = False
        invoke = REPLICA_INVOKE if self.replica else None
        procedures = [(self.get_fields, "get_fields", RegisterOptions(invoke=invoke)),
                      (self.get_data, "get_data",
                       RegisterOptions(details_arg="details", invoke=invoke))]
        done: set[str] = set()  # registered already (a retry must not repeat them)
        while True:
            try:
                for fn, leaf, options in procedures:
                    if leaf not in done:
                        await session.register(fn, self.uri(leaf), options=options)
                        done.add(leaf)
                break
            except ApplicationError as exc:
                if exc.error not in ("wamp.error.not_authorized",
                                     "wamp.error.procedure_already_exists",
                                     ApplicationError.PROCEDURE_EXISTS_INVOCATION_POLICY_CONFLICT):
                    raise
            ok = await self.claim(session)
            if ok is None:
                if not hub_missing_logged:
                    log.warn("no hub is running yet; waiting for it")
                    hub_missing_logged = True
            elif not ok:
                if taken_for >= ADD_RETRY_SECONDS:
                    return False
                taken_for += 0.25
            await sleep(0.25)
        while True:
            ok = await self.add(session)
            if ok is not None:
                return ok
            await sleep(0.25)

    async def _on_join(self, session, details) -> None:
        self.session = session
        await session.subscribe(lambda *a, **k: ensureDeferred(self._readd(session)),
                                self.uris.hub_started)
        if not await self._register(session):
            log.error("data node name {name!r} is already served by another session; "
                      "not serving", name=self.node.name)
            self.session = None
            self.failed = True
            session.leave()
            self.component.stop()
            return
        self.listed = True
        log.info("serving data node {name!r} (session {s})",
                 name=self.node.name, s=details.session)

    async def _readd(self, session) -> None:
        if session is self.session and self.listed:
            if await self.add(session) is False:
                log.error("the restarted hub refused our name {name!r}", name=self.node.name)

    def _on_leave(self, session, details) -> None:
        self.session = None
        self.listed = False


def _arrays(result: Result) -> dict:
    """``result`` as the mapping of numpy arrays that :mod:`sisock.wire` streams."""
    return {"data": result.data, "field_timeline": result.field_timeline,
            "timeline": {k: {"t": v.t, "finalized_until": v.finalized_until}
                         for k, v in result.timelines.items()}}


def run_nodes(services: list[NodeService], log_level: str = "info") -> None:
    """Start the reactor with every service's component (blocks)."""
    from .wamp import run_components

    run_components([s.component for s in services], log_level)

