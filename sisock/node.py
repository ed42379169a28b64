"""Run a data node: a plain Python object served over WAMP.

A node *core* is any object with ``name``, ``description`` and two
blocking methods (see :class:`DataNode`); it knows nothing about WAMP.
:class:`NodeService` wires a core to a reconnecting
:class:`autobahn.twisted.component.Component`:

1. on every join it calls ``data_node.add`` (retrying briefly while the
   hub starts or an old session of the same name is still leaving);
2. registers ``{base}.consumer.<name>.get_fields`` and ``.get_data``,
   which run the core in a thread and translate
   :class:`~sisock.errors.SisockError` into WAMP errors;
3. re-adds itself whenever the hub announces ``{base}.hub.started``;
4. offers :meth:`NodeService.publish_live` for live samples.
"""

from __future__ import annotations

from ._quiet import silence_bjdata

silence_bjdata()

from typing import Protocol  # noqa: E402

from autobahn.twisted.component import Component  # noqa: E402
from autobahn.twisted.util import sleep  # noqa: E402
from autobahn.wamp.exception import ApplicationError  # noqa: E402
from autobahn.wamp.types import RegisterOptions  # noqa: E402
from twisted.internet import threads  # noqa: E402
from twisted.internet.defer import ensureDeferred  # noqa: E402
from twisted.logger import Logger  # noqa: E402

from . import budget, wire  # noqa: E402
from .authz import valid_name  # noqa: E402
from .errors import BadArgument, SisockError  # noqa: E402
from .settings import Settings  # noqa: E402
from .timeutil import check_interval  # noqa: E402
from .wamp import make_component, to_application_error  # noqa: E402

log = Logger(namespace="sisock.node")

#: How long a node keeps asking for a name held by another session.
ADD_RETRY_SECONDS = 5.0


class DataNode(Protocol):
    """What a node core provides. Methods are called in a worker thread."""

    name: str
    description: str

    def get_fields(self, start: float, end: float) -> tuple[dict, dict]:
        """Return ``(field, timeline)`` for ``[start, end)`` in UNIX seconds."""

    def get_data(self, fields: list[str], start: float, end: float,
                 min_stride: float | None = None, method: str | None = None) -> dict:
        """Return ``{"data": {f: array}, "timeline": {tl: {"t", "finalized_until"}}}``."""


class NodeService:
    """Serve one :class:`DataNode` core through a WAMP component.

    Parameters
    ----------
    node : DataNode
        The core.
    settings : Settings
        Router, realm and credentials (role ``server``).
    component : Component, optional
        Built with :func:`sisock.wamp.make_component` when omitted.
    """

    def __init__(self, node: DataNode, settings: Settings,
                 component: Component | None = None) -> None:
        if not valid_name(node.name):
            raise BadArgument(f"data node name {node.name!r} is not allowed: use letters, "
                              "digits, '_' or '-' (it becomes one URI component)")
        self.node = node
        self.settings = settings
        self.component = component or make_component(settings)
        self.session = None
        self.listed = False
        self.failed = False
        self.chunk_bytes = wire.CHUNK_BYTES
        #: Limit of one live publication (subscribers' clients may be ApplicationRunners).
        self.live_message_bytes = budget.DEFAULT_MESSAGE_BYTES
        self._live_too_big_logged = False
        self.component.on("join", lambda s, d: ensureDeferred(self._on_join(s, d)))
        self.component.on("leave", self._on_leave)

    def uri(self, leaf: str) -> str:
        """``{base}.consumer.<name>.<leaf>``."""
        return self.settings.uri(f"consumer.{self.node.name}.{leaf}")

    # -- RPCs -------------------------------------------------------------
    def _wamp_error(self, exc: Exception, rpc: str) -> ApplicationError:
        """Every failure leaves as ``{base}.error.*`` with a readable message."""
        if isinstance(exc, SisockError):
            return to_application_error(exc, self.settings.base_uri)
        log.failure("{rpc} failed", rpc=rpc)
        return ApplicationError(self.settings.uri("error.internal"),
                                f"{rpc} failed on node {self.node.name!r}: "
                                f"{type(exc).__name__}: {exc}")

    async def get_fields(self, *args, **kwargs):
        """``get_fields(start, end) -> [field, timeline]``."""
        try:
            if kwargs or len(args) != 2:
                raise BadArgument(
                    f"get_fields takes exactly (start, end), got {len(args)} positional "
                    f"argument(s) and keywords {sorted(kwargs)}")
            s, e = check_interval(*args)
            field, timeline = await threads.deferToThread(self.node.get_fields, s, e)
            return [field, timeline]
        except Exception as exc:
            raise self._wamp_error(exc, "get_fields") from exc

    async def get_data(self, *args, details=None, **ext):
        """``get_data(field, start, end, min_stride=None, **ext)``.

        Extensions: ``method`` (downsampling method) and ``encoding``
        (``"binary"`` for raw little-endian arrays, see :mod:`sisock.wire`).
        A binary reply larger than :data:`sisock.wire.CHUNK_BYTES` goes out
        as progressive results when the caller asked for them.
        """
        try:
            names = ("field", "start", "end", "min_stride")
            if not 3 <= len(args) <= 4:
                raise BadArgument(
                    f"get_data takes (field, start, end, min_stride=None), got "
                    f"{len(args)} positional argument(s)")
            given = dict(zip(names, args))
            for key in names:
                if key in ext:
                    if key in given:
                        raise BadArgument(f"argument '{key}' given twice")
                    given[key] = ext.pop(key)
            method = ext.pop("method", None)
            encoding = wire.check_encoding(ext.pop("encoding", None))
            limit = budget.check_limit(ext.pop("max_message_bytes", None))
            if ext:
                raise BadArgument(
                    f"unknown argument(s) {sorted(ext)} to get_data; "
                    "known extensions are 'method', 'encoding' and 'max_message_bytes'"
                )
            fields = wire.check_fields(given["field"])
            s, e = check_interval(given["start"], given["end"])
            stride = wire.check_min_stride(given.get("min_stride"))
            streaming = encoding == "binary" and details is not None and bool(
                getattr(details, "progress", None))
            extra = ({"streaming": True}
                     if streaming and getattr(self.node, "accepts_streaming", False) else {})
            result, reply, part = await threads.deferToThread(
                self._query, fields, s, e, stride, method, encoding, streaming, extra, limit)
            if reply is None:
                return await self._stream(result, details.progress, part)
            return reply
        except Exception as exc:
            raise self._wamp_error(exc, "get_data") from exc

    def _query(self, fields, start, end, stride, method, encoding, streaming, extra,
               limit=budget.DEFAULT_MESSAGE_BYTES):
        """Worker thread: query the core and encode the reply off the reactor.

        Returns ``(result, reply, part_bytes)``; ``reply`` is None when the
        result is to be streamed in parts of ``part_bytes`` (encoded part by
        part as they are sent). Every message fits the caller's ``limit``
        in bytes, whatever the serializer (:mod:`sisock.budget`).
        """
        result = self.node.get_data(fields, start, end, stride, method, **extra)
        reply, part = budget.plan_reply(result, start, end, limit, encoding, streaming,
                                        method, self.chunk_bytes)
        return result, reply, part

    async def _stream(self, result: dict, progress, chunk_bytes: int | None = None) -> dict:
        """Send all but the last part as progressive results; return the last."""
        last = None
        for part in wire.chunk_reply(result, chunk_bytes or self.chunk_bytes):
            if last is not None:
                progress(last)
                await sleep(0)  # let the reactor flush the socket between parts
            last = part
        return last

    # -- live -------------------------------------------------------------
    def publish_live(self, result: dict) -> bool:
        """Publish new samples (``get_data`` shape) on ``<name>.live``.

        Returns False when not connected (the samples stay in the core).
        """
        if self.session is None or not self.listed:
            return False
        try:
            for payload in budget.split_live(result, self.live_message_bytes):
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
            return bool(await session.call(
                self.settings.uri("data_node.add"), self.node.name,
                self.node.description, session.session_id))
        except ApplicationError as exc:
            if exc.error == "wamp.error.no_such_procedure":
                return None
            raise

    async def claim(self, session) -> bool | None:
        """Call ``data_node.claim`` (reserve our name); None while no hub is running."""
        try:
            return bool(await session.call(
                self.settings.uri("data_node.claim"), self.node.name, session.session_id))
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
        procedures = [(self.get_fields, "get_fields", None),
                      (self.get_data, "get_data", RegisterOptions(details_arg="details"))]
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
                                     "wamp.error.procedure_already_exists"):
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
                                self.settings.uri("hub.started"))
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


def run_nodes(services: list[NodeService], log_level: str = "info") -> None:
    """Start the reactor with every service's component (blocks)."""
    from .wamp import run_components

    run_components([s.component for s in services], log_level)

