"""Blocking client for notebooks and scripts: WAMP in a thread, numpy out.

>>> from sisock.client import connect
>>> with connect() as c:                                   # doctest: +SKIP
...     print(c.nodes())
...     r = c.get_data("weather", ["temperature"], -86400, 0)
...     r.data["temperature"]

The WAMP session runs on its own asyncio loop in a daemon thread, so the
client works the same in a plain script and inside a running Jupyter
kernel (whose thread already runs a loop). Every call blocks the caller
until the answer arrives or ``timeout`` passes. Settings follow the usual
order: arguments, then environment, then defaults; credentials default to
the ``consumer`` role's generated ones.

Importing this module does not import pandas or xarray.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
import time
from typing import Any, Callable

from .rawsocket import Component
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.types import CallOptions

from sisock.consumer.errors import (
    AuthenticationFailed,
    CallTimeout,
    ClientError,
    Conflict,
    DeviceUnavailable,
    Expired,
    NodeUnknown,
    NotAuthorized,
    OutOfLimits,
    RateLimited,
    RemoteError,
    RouterUnreachable,
    TooMuchDataError,
    UnknownPoint,
    WriteBadArgument,
    WriteRefused,
)
from sisock.consumer.writes import OperatorCalls
from sisock.consumer.calls import DataCall, NodeVersions, Parts, remote_error
from sisock.core.protocol import Result, TimelineData
from sisock.site.settings import Settings, load_settings
from .transport import WEBSOCKET_MAX_MESSAGE, message_limit, transport_configs

__all__ = [
    "connect",
    "Client",
    "DataResult",
    "TimelineData",
    "ClientError",
    "RouterUnreachable",
    "AuthenticationFailed",
    "NodeUnknown",
    "RemoteError",
    "CallTimeout",
    "TooMuchDataError",
    "WriteRefused",
    "NotAuthorized",
    "UnknownPoint",
    "OutOfLimits",
    "Conflict",
    "Expired",
    "RateLimited",
    "DeviceUnavailable",
    "WriteBadArgument",
]


#: Seconds between attempts to rejoin after the connection was lost.
RECONNECT_DELAY = 0.5
#: Seconds after a rejoin during which "no such procedure" is retried (the
#: hub and nodes re-register after a router restart, a moment after us).
REJOIN_GRACE = 10.0


class _Resend(Exception):
    """Internal: the call's session was lost; send the call again."""


class DataResult(Result):
    """The answer of :meth:`Client.get_data`: a :class:`sisock.core.protocol.Result` for notebooks.

    Attributes
    ----------
    data : dict of str to numpy.ndarray
        One array per requested field (empty when there is no data).
    timelines : dict of str to TimelineData
        Times (``.t``) and ``.finalized_until`` of each timeline with data.
    field_timeline : dict of str to str
        Which timeline each field belongs to (sent by the node).
    parts : int
        Messages the reply arrived in (more than one: streamed).
    """

    parts: int = 1

    @classmethod
    def from_reply(cls, reply: dict, parts: int = 1) -> DataResult:
        """Decode a ``get_data`` reply (any sisock version)."""
        out = cls.from_wire(reply)
        out.parts = parts
        return out

    def __repr__(self) -> str:
        tl = ", ".join(f"{k}: {len(v.t)}" for k, v in self.timelines.items())
        return f"<DataResult fields={sorted(self.data)} samples={{{tl}}}>"

    def to_pandas(self) -> dict:
        """One :class:`pandas.DataFrame` per timeline, indexed by UTC datetime."""
        import pandas as pd

        out = {}
        for tl, fields in self.groups().items():
            t = self.timelines[tl].t
            index = pd.to_datetime(t, unit="s", utc=True)
            out[tl] = pd.DataFrame({f: self.data[f] for f in fields}, index=index)
            out[tl].index.name = "time"
        return out

    def to_xarray(self):
        """An :class:`xarray.Dataset` with one time dimension per timeline."""
        import xarray as xr

        variables = {}
        coords = {}
        for tl, fields in self.groups().items():
            dim = f"t_{tl}"
            coords[dim] = self.timelines[tl].t
            for f in fields:
                variables[f] = (dim, self.data[f])
        return xr.Dataset(variables, coords=coords)


class Client(OperatorCalls):
    """A session that reconnects by itself; create with :func:`connect`.

    After the router goes away the client rejoins every
    :data:`RECONNECT_DELAY` seconds; calls made meanwhile wait for the new
    session (up to their timeout) and subscriptions resume. A call whose
    connection died under it is sent again (sisock calls are reads).

    Parameters
    ----------
    settings : Settings
        Router URL, realm, credentials, TLS CA.
    timeout : float
        Seconds to wait for connecting and for each call.
    serializer : str
        ``"msgpack"`` (default, carries bytes raw), ``"cbor"`` or ``"json"``.
    binary : bool
        Ask nodes for binary arrays (falls back to lists for old nodes).

    Attributes
    ----------
    rejoin_seconds : list of float
        Seconds from each connection loss to the next join.
    """

    def __init__(
        self, settings: Settings, timeout: float = 10.0, serializer: str = "msgpack", binary: bool = True
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        self.serializer = serializer
        self.binary = binary and serializer != "json"
        self.uris = settings.uris
        self._session = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sisock-client", daemon=True)
        self._versions = NodeVersions()
        self._closing = False
        self._ready = threading.Event()  # set while a session is joined
        self._subscriptions: list[tuple[str, Callable[..., None]]] = []
        self._lost_at: float | None = None
        self._rejoined_at = -math.inf
        self._message_bytes = WEBSOCKET_MAX_MESSAGE  # of the joined transport
        self.rejoin_seconds: list[float] = []

    # -- connection -------------------------------------------------------
    def _transports(self) -> list[dict]:
        """Transports to try in turn: RawSocket first where the router offers it
        and big replies arrive streamed (binary arrays), then WebSocket
        (see :func:`sisock.wamp.transport.use_rawsocket`)."""
        return transport_configs(
            self.settings, [self.serializer], max_retries=0, timeout=self.timeout, streams_big_replies=self.binary
        )

    def _component(self, joined: asyncio.Future, transport: dict) -> Component:
        s = self.settings
        auth = None
        if s.user and s.secret:
            auth = {"wampcra": {"authid": s.user, "secret": s.secret}}
        comp = Component(transports=[transport], realm=s.realm, authentication=auth)

        async def on_join(session, details):
            for uri, callback in list(self._subscriptions):  # resume after a reconnect
                await session.subscribe(callback, uri)
            self._session = session
            self._message_bytes = message_limit(transport["type"])
            if self._lost_at is not None:
                self.rejoin_seconds.append(time.monotonic() - self._lost_at)
                self._lost_at = None
                self._rejoined_at = time.monotonic()
            self._ready.set()
            if not joined.done():
                joined.set_result(session)

        def on_leave(session, details):
            self._session = None
            self._ready.clear()
            if self._lost_at is None:
                self._lost_at = time.monotonic()
            if not joined.done():
                reason = getattr(details, "reason", "") or ""
                message = getattr(details, "message", "") or ""
                if "auth" in reason or "not_authorized" in reason or "no_such_role" in reason:
                    joined.set_exception(
                        AuthenticationFailed(
                            f"router {s.router_url} refused the credentials of user "
                            f"{s.user!r}: {reason} {message}".strip()
                        )
                    )
                else:
                    joined.set_exception(ClientError(f"session closed: {reason} {message}"))

        comp.on("join", on_join)
        comp.on("leave", on_leave)
        return comp

    def open(self) -> "Client":
        """Connect and join (blocks up to ``timeout``)."""
        import logging

        # autobahn logs every connection attempt at WARNING, and the close of a
        # RawSocket session as an ERROR ("failed to complete connection");
        # failures reach the caller as exceptions here, so keep notebooks and
        # scripts quiet.
        logging.getLogger("autobahn.asyncio.component.Component").setLevel(logging.CRITICAL)
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._join(), self._loop)
        try:
            fut.result(self.timeout)
        except concurrent.futures.TimeoutError:
            self.close()
            raise CallTimeout(f"no session with {self.settings.router_url} within {self.timeout} s") from None
        except Exception:
            self.close()
            raise
        return self

    async def _join(self):
        """Join over the first transport that works (RawSocket, then WebSocket).

        A router without RawSocket refuses it, or (a WebSocket-only port)
        waits for an HTTP request that never comes: then WebSocket is tried.
        """
        transports = self._transports()
        for transport in transports[:-1]:
            try:
                return await asyncio.wait_for(self._join_once(transport, len(transports)), max(2.0, self.timeout / 4))
            except (RouterUnreachable, asyncio.TimeoutError):
                await self._stop_component(1)
        return await self._join_once(transports[-1], len(transports))

    async def _join_once(self, transport: dict, choices: int = 1):
        """Start one component (no retries of its own) and wait for its join."""
        joined = self._loop.create_future()
        comp = self._component(joined, transport)
        done = comp.start(self._loop)

        def finished(fut):
            exc = fut.exception() if not fut.cancelled() else None  # always retrieved
            if not joined.done():
                joined.set_exception(
                    RouterUnreachable(
                        f"cannot reach the router at {self.settings.router_url}"
                        + (f" over {transport['type']}" if choices > 1 else "")
                        + (f": {exc}" if exc else "")
                    )
                )
            elif not self._closing and comp is self._component_obj:
                # the session had joined, then the connection ended
                self._session = None
                self._ready.clear()
                if self._lost_at is None:
                    self._lost_at = time.monotonic()
                self._loop.create_task(self._reconnect())

        done.add_done_callback(finished)
        self._component_obj, self._component_done = comp, done
        return await joined

    async def _stop_component(self, seconds: float) -> None:
        comp = getattr(self, "_component_obj", None)
        if comp is not None:
            try:
                await asyncio.wait_for(comp.stop(), seconds)
            except BaseException:
                pass

    async def _reconnect(self) -> None:
        """Rejoin every :data:`RECONNECT_DELAY` seconds until joined or closed."""
        while not self._closing:
            await asyncio.sleep(RECONNECT_DELAY)
            if self._closing:
                return
            try:
                await asyncio.wait_for(self._join(), max(self.timeout, 5.0))
                return
            except Exception:
                if not self._ready.is_set():
                    await self._stop_component(1)

    @property
    def connected(self) -> bool:
        """True while a session is joined."""
        return self._ready.is_set()

    def _wait_session(self, deadline: float, what: str):
        """The joined session, waiting for a reconnect until ``deadline``."""
        while True:
            if self._closing:
                raise ClientError(f"{what}: the client was closed")
            session = self._session
            if session is not None and self._ready.is_set():
                return session
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallTimeout(
                    f"{what}: not connected to {self.settings.router_url} (reconnecting) within the timeout"
                )
            self._ready.wait(min(left, 0.5))

    def close(self) -> None:
        """Leave the session and stop the thread."""
        self._closing = True
        self._ready.set()  # wake waiting callers (they see _closing)
        if not self._thread.is_alive():
            return

        async def stop():
            await self._stop_component(2)
            done = getattr(self, "_component_done", None)
            if done is not None:  # let it settle (a RawSocket close ends it in error)
                try:
                    await asyncio.wait_for(done, 1)
                except BaseException:
                    pass

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(3)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(3)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- calls ------------------------------------------------------------
    def call(
        self, uri: str, *args, timeout: float | None = None, on_progress: Callable[[Any], None] | None = None, **kwargs
    ) -> Any:
        """Call a procedure (full URI, or relative to the base URI).

        ``on_progress`` receives progressive results (in the client's thread).
        """
        full = self.uris.full(uri)
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        if on_progress is not None:
            kwargs["options"] = CallOptions(on_progress=on_progress)
        while True:
            session = self._wait_session(deadline, full)

            async def do_call(session=session):
                return await session.call(full, *args, **kwargs)

            fut = asyncio.run_coroutine_threadsafe(do_call(), self._loop)
            try:
                return self._result(fut, session, deadline, wait, full)
            except _Resend:
                continue  # the connection was lost: send again once rejoined
            except ApplicationError as exc:
                if exc.error == "wamp.error.no_such_procedure":
                    if time.monotonic() - self._rejoined_at < REJOIN_GRACE and deadline - time.monotonic() > 0.25:
                        time.sleep(0.2)  # just rejoined: hub and nodes are re-registering
                        continue
                    raise NodeUnknown(f"no such procedure {full} (is the node running?)") from None
                message = exc.args[0] if exc.args else str(exc)
                typed = remote_error(self.uris.base, exc.error, exc.args, exc.kwargs)
                cls = TooMuchDataError if typed is not None and typed.kind == "too_much_data" else RemoteError
                raise cls(exc.error, str(message), typed.details if typed is not None else None) from None

    def _result(self, fut, session, deadline: float, wait: float, full: str):
        """Wait for a call's answer; raise :class:`_Resend` if its session was lost.

        A call sent just as the connection died may never be answered nor
        failed by autobahn, so the wait also watches the session.
        """
        while True:
            left = deadline - time.monotonic()
            try:
                return fut.result(max(min(left, 0.5), 0.001))
            except concurrent.futures.TimeoutError:
                if time.monotonic() >= deadline:
                    if self._session is session:
                        fut.cancel()
                    raise CallTimeout(f"{full}: no answer within {wait} s") from None
                if self._session is not session:
                    raise _Resend() from None
            except ApplicationError as exc:
                if exc.error.startswith("wamp.close.") and time.monotonic() < deadline:
                    raise _Resend() from None
                raise
            except TransportLost as exc:
                if time.monotonic() < deadline:
                    raise _Resend() from None
                raise ClientError(f"connection lost during {full}") from exc

    def nodes(self) -> list[dict]:
        """The hub's list of data nodes: ``[{"name", "description"}, ...]``."""
        return self.call(self.uris.list_nodes)

    def fields(self, node: str, start: float = -86400, end: float = 0) -> tuple[dict, dict]:
        """``get_fields`` of a node: ``(field, timeline)``."""
        try:
            field, timeline = self.call(self.uris.get_fields(node), start, end)
        except NodeUnknown:
            raise NodeUnknown(f"no data node named {node!r}") from None
        return field, timeline

    def get_data(
        self,
        node: str,
        fields: list[str] | str,
        start: float,
        end: float,
        min_stride: float | None = None,
        method: str | None = None,
        timeout: float | None = None,
        progress: bool | None = None,
        stream: bool = True,
    ) -> DataResult:
        """Fetch samples as numpy arrays.

        Parameters
        ----------
        node : str
            Data node name.
        fields : list of str or str
            Field names.
        start, end : float
            UNIX seconds, or <= 0 for "seconds before now".
        min_stride : float, optional
            Downsample so samples are at least this many seconds apart.
        method : str, optional
            ``mean`` (default), ``min``, ``max``, ``first``, ``last``, ``minmax``.
        timeout : float, optional
            Seconds to wait for the whole answer (default: the client's).
        progress : bool, optional
            Show a tqdm bar while a large answer streams in; default: only
            when the session is interactive (terminal or notebook).
        stream : bool
            Accept the answer as progressive results (default). False asks
            for one message, which the node refuses above its single-reply
            limit.

        Raises
        ------
        NodeUnknown, RemoteError, CallTimeout
        """
        if isinstance(fields, str):
            fields = [fields]
        uri = self.uris.get_data(node)
        # the largest message our transport takes; a node assumes 1 MiB otherwise
        call = self._versions.call(
            node,
            DataCall(fields, start, end, min_stride, method, binary=self.binary, max_message_bytes=self._message_bytes),
        )
        while True:
            try:
                parts = self._fetch(uri, call, timeout, progress, stream)
                break
            except NodeUnknown:
                raise NodeUnknown(f"no data node named {node!r}") from None
            except RemoteError as exc:
                instead = self._versions.fallback(node, call, exc.uri)
                if instead is None:
                    raise
                call = instead  # a sisock 0.x node: lists, no extensions
        return DataResult.from_reply(parts.reply(), parts.count)

    def _fetch(self, uri: str, call: DataCall, timeout: float | None, progress: bool | None, stream: bool) -> Parts:
        """Send one ``get_data`` call; the answer's parts (streamed when allowed)."""
        parts = Parts()
        if not (stream and call.binary and not call.legacy):
            parts.add(self.call(uri, *call.args, timeout=timeout, **call.kwargs))
            return parts
        bar = None
        show = _interactive() if progress is None else progress

        def on_part(part, *args, **kw):
            nonlocal bar
            before = parts.received
            parts.add(part)
            if show:
                if bar is None:
                    from tqdm.auto import tqdm

                    bar = tqdm(
                        total=parts.expected, unit="sample", unit_scale=True, desc=uri.rsplit(".", 2)[-2], leave=False
                    )
                bar.total = parts.expected
                bar.update(parts.received - before)

        try:
            parts.add(self.call(uri, *call.args, timeout=timeout, on_progress=on_part, **call.kwargs))
        finally:
            if bar is not None:
                bar.close()
        return parts

    def subscribe_uri(self, uri: str, callback: Callable[..., None]) -> None:
        """Subscribe ``callback(*args, **kwargs)`` to a topic (full or relative URI).

        The callback runs in the client's thread: keep it short.
        """
        full = self.uris.full(uri)
        session = self._wait_session(time.monotonic() + self.timeout, full)
        self._subscriptions.append((full, callback))  # resumed on every rejoin

        async def do_subscribe():
            return await session.subscribe(callback, full)

        asyncio.run_coroutine_threadsafe(do_subscribe(), self._loop).result(self.timeout)

    def subscribe(self, node: str, callback: Callable[[DataResult], None]) -> None:
        """Call ``callback(DataResult)`` for each sample on the node's ``live`` topic."""

        def handler(payload, *args, **kwargs):
            callback(DataResult.from_reply(payload))

        self.subscribe_uri(self.uris.live(node), handler)


def _interactive() -> bool:
    """True in a terminal or a Jupyter kernel (where progress bars help)."""
    import sys

    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def connect(
    url: str | None = None,
    realm: str | None = None,
    user: str | None = None,
    secret: str | None = None,
    *,
    timeout: float = 10.0,
    home: str | None = None,
    tls_ca: str | None = None,
    base_uri: str | None = None,
    serializer: str = "msgpack",
    binary: bool = True,
) -> Client:
    """Connect to a sisock router and return a :class:`Client`.

    Parameters default to ``SISOCK_*`` environment variables, then to the
    consumer role's generated credentials in ``SISOCK_HOME``. Give an
    operator account's ``user`` and ``secret`` (or ``SISOCK_USER`` /
    ``SISOCK_SECRET``) to change instruments with :meth:`Client.set`.

    Raises
    ------
    RouterUnreachable, AuthenticationFailed, CallTimeout
    """
    settings = load_settings(
        "consumer", router_url=url, realm=realm, user=user, secret=secret, tls_ca=tls_ca, home=home, base_uri=base_uri
    )
    return Client(settings, timeout=timeout, serializer=serializer, binary=binary).open()
