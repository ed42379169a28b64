"""The web bridge's HTTP side: a thin ``twisted.web`` shell over :class:`Bridge`.

Routes (README, "Web dashboard and Grafana"; every JSON error is ``{"error", "message"}``):

==========================  ==================================================
``GET /``                   200 ``{"status": "ok"}`` while the router session
                            is up, 503 when not (Grafana's health check); a
                            browser asking for HTML gets the dashboard
``POST /search``            Grafana: ``["node::field", ...]`` containing the
                            typed text
``POST /query``             Grafana: ``timeserie`` and ``table``
``POST /annotations``       Grafana: changes of a ``node::field``
``POST /tag-keys``,         Grafana ad-hoc filters (key ``node``)
``POST /tag-values``
``GET /api/nodes``          ``[{"name", "description"}, ...]``
``GET /api/nodes/N/fields`` ``{"field": {...}, "timeline": {...}}`` (``get_fields``;
                            no range: the last day, else 30 days, else all time)
``GET /api/data``           ``?node=&fields=a,b&start=&end=&min_stride=&method=&format=json|csv|binary``
``GET /api/live?nodes=a,b`` Server-Sent Events relaying ``{base}.consumer.N.live``
                            of every node named, one stream (:mod:`.live`);
                            ``?node=N`` is the single-node form
``/api/views[/NAME]``       saved dashboard views (:mod:`.views`)
``/api/operator/...``       operator sign-in and writes (:mod:`.operator`)
``GET /assets/...``         the dashboard's built files
==========================  ==================================================

Work that can take long (encoding a big answer) runs in a thread.

Before any request reaches :class:`Api` (see ``docs/security.md``):

* :class:`GuardedRequest` judges a request's head (``Host``, token,
  declared length) before its body is read, and stops a chunked body at
  the limit, so nothing is stored for a caller that is refused; an
  accepted body (at most :data:`~sisock.web.guard.MAX_BODY`) is kept in
  memory, never in a temporary file;
* :class:`Channel` gives a request :data:`HEAD_TIMEOUT` seconds to finish
  its head and :data:`BODY_TIMEOUT` for its body (slow clients that hold
  connections open are closed with a 408);
* the access log (:func:`access_log_line`) never shows a token.
"""

from __future__ import annotations

import io
import json
import mimetypes
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

from twisted.internet import threads
from twisted.internet.defer import DeferredSemaphore, ensureDeferred
from twisted.logger import Logger
from twisted.web import http as twhttp
from twisted.web import resource, server

from sisock.core import encoders

from . import encode, grafana, guard, live, views
from .operator import OperatorGate, OperatorRoutes
from .session import Bridge
from .errors import WebError, bad
from .guard import MAX_BODY
from .request import _args, _client, _headers, _host
from .params import check_budget, check_total_budget, parse_data_query, parse_node, parse_range, too_much

log = Logger(namespace="sisock.web")

COOKIE = "sisock_token"
#: Seconds a request has, from its first byte, to send its whole head.
HEAD_TIMEOUT = 10.0
#: Seconds a request has, once its head is in, to send its whole body.
BODY_TIMEOUT = 30.0
#: Seconds a refused connection is still read (and dropped) so that the
#: client, still sending, reads the answer before the connection closes.
LINGER = 5.0
#: Seconds an idle keep-alive connection stays open.
IDLE_TIMEOUT = 60.0
#: Answers encoded in threads at once: each holds the GIL while it runs,
#: so more would only slow the reactor thread down.
ENCODERS = 2
_encoders = DeferredSemaphore(ENCODERS)


#: Answers of fewer values are encoded at once, on the reactor thread (a few ms).
INLINE_VALUES = 20_000


async def _in_thread(values: int, fn: Callable, *args: Any) -> Any:
    """``fn(*args)``: for an answer of ``values`` values or more, in a thread (at
    most :data:`ENCODERS` at once); for a small one, right here, so that it does
    not wait behind big ones."""
    if values < INLINE_VALUES:
        return fn(*args)
    return await _encoders.run(threads.deferToThread, fn, *args)


class WebConfig:
    """Options of the HTTP shell.

    Parameters
    ----------
    token : str, optional
        When set, every request must carry it (``Authorization: Bearer``,
        ``?token=`` or the cookie set by a page opened with ``?token=``).
    cors_origins : list of str
        Origins allowed by CORS (``*`` for any); empty: CORS off.
    static_dir : Path, optional
        The built dashboard (``index.html``, ``app.js``, ``app.css``).
    max_values : int
        Most values one ``/api/data``, ``/query`` or ``/annotations`` answer
        may hold (for ``/query``: every target together).
    allowed_hosts : list of str
        Host names answered besides localhost and IP addresses (``*``:
        any; the DNS-rebinding check is then off).
    trust_proxy : bool
        Believe ``X-Forwarded-Proto: https`` (the token cookie is then
        ``Secure``); only behind a proxy that sets that header itself.
    """

    def __init__(
        self,
        token: str | None = None,
        cors_origins: list[str] | None = None,
        static_dir: Path | None = None,
        max_values: int = 20_000_000,
        allowed_hosts: list[str] | None = None,
        trust_proxy: bool = False,
    ) -> None:
        self.token = token or None
        self.cors_origins = list(cors_origins or [])
        self.static_dir = static_dir
        self.max_values = max_values
        self.policy = guard.Policy(
            token=self.token,
            allowed_hosts=guard.host_names(allowed_hosts or []),
            cors_origins=tuple(self.cors_origins),
            trust_proxy=trust_proxy,
        )


def _wants_html(request) -> bool:
    accept = (request.getHeader("accept") or "").lower()
    return "text/html" in accept


def _cookie(request) -> str | None:
    value = request.received_cookies.get(COOKIE.encode())
    return value.decode("latin-1") if value else None


def access_log_line(timestamp: str, request) -> str:
    """The combined-log line of ``request`` with every token redacted."""
    return guard.redact(twhttp.combinedLogFormatter(timestamp, request))


class Channel(twhttp.HTTPChannel):
    """HTTP/1.1 with deadlines on a request's head and body, and early refusals.

    A request must send its whole head within :data:`HEAD_TIMEOUT` seconds
    of its first byte, and its body within :data:`BODY_TIMEOUT` seconds of
    its head: a client that trickles bytes (slowloris) is answered 408 and
    closed. :meth:`refuse` answers before the body is read.
    """

    head_timeout = HEAD_TIMEOUT
    body_timeout = BODY_TIMEOUT
    linger = LINGER
    _deadline = None
    _linger_call = None
    _refused = False

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._deadline is None and self.line_mode and not self._handlingRequest:
            self._deadline = self.callLater(self.head_timeout, self._too_slow, "head", self.head_timeout)
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if not self._refused:
            super().lineReceived(line)

    def rawDataReceived(self, data: bytes) -> None:
        if not self._refused:
            super().rawDataReceived(data)

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802 - Twisted's name
        """A request line (or header line) over ``MAX_LENGTH``: a JSON 414, not a silent close."""
        self.refuse(
            WebError(
                "uri_too_long",
                f"the request line or a header is longer than {self.MAX_LENGTH} bytes; "
                "ask for fewer fields or nodes per request",
            )
        )

    def allHeadersReceived(self) -> None:
        self._cancel_deadline()
        super().allHeadersReceived()
        if not self._refused and self.length != 0:
            self._deadline = self.callLater(self.body_timeout, self._too_slow, "body", self.body_timeout)

    def allContentReceived(self) -> None:
        self._cancel_deadline()
        if not self._refused:
            super().allContentReceived()

    def connectionLost(self, reason) -> None:
        self._cancel_deadline()
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.cancel()
        super().connectionLost(reason)

    def _too_slow(self, part: str, seconds: float) -> None:
        self._deadline = None
        peer = self.transport.getPeer() if self.transport else None
        log.info("closing {peer}: its request {part} took over {s:g} s", peer=str(peer), part=part, s=seconds)
        self.refuse(WebError("request_timeout", f"the request {part} did not arrive within {seconds:g} s"))

    def refuse(self, exc: WebError, request=None, headers: dict[str, str] | None = None) -> None:
        """Answer ``exc`` now and close, dropping the rest of the request unread.

        The connection is half-closed and whatever the client still sends is
        read and dropped for :data:`LINGER` seconds, so that a client that
        is still sending its body reads the answer instead of a reset.
        """
        if self._refused or self.transport is None:
            return
        self._refused = True
        self._cancel_deadline()
        body = json.dumps(exc.body(), separators=(",", ":")).encode()
        reason = twhttp.RESPONSES.get(exc.status, b"Error").decode("latin-1")
        lines = [
            f"HTTP/1.1 {exc.status} {reason}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            "connection: close",
            "cache-control: no-store",
        ]
        lines += [f"{k}: {v}" for k, v in {**guard.SECURITY_HEADERS, **(headers or {})}.items()]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if request is not None and getattr(self, "factory", None) is not None:
            request.method = getattr(self, "_command", b"-")
            request.uri = getattr(self, "_path", b"-")
            request.clientproto = getattr(self, "_version", b"HTTP/1.1")
            request.code = exc.status
            request.sentLength = len(body)
            try:
                self.factory.log(request)
            except Exception:
                log.failure("access log failed")
        try:
            self.transport.loseWriteConnection()
        except AttributeError:
            self.transport.loseConnection()
        self._linger_call = self.callLater(self.linger, self.transport.abortConnection)


class GuardedRequest(server.Request):
    """A request judged on its head before its body is read.

    Refused before any byte of the body is stored: a foreign ``Host``, a
    missing or wrong token, a declared ``Content-Length`` over the limit;
    a chunked body is cut off as soon as it passes the limit. An accepted
    body is kept in memory (it is at most :data:`MAX_BODY` bytes).
    """

    _refused = False
    _received = 0

    def _policy(self) -> guard.Policy | None:
        api = getattr(getattr(self.channel, "site", None), "api", None)
        return getattr(getattr(api, "config", None), "policy", None)

    def _refuse(self, exc: WebError) -> None:
        self._refused = True
        self.content = io.BytesIO()
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after the answer
        policy = self._policy()
        extra = guard.cors_headers(self.getHeader("origin"), policy.cors_origins) if policy else {}
        refuse = getattr(self.channel, "refuse", None)
        if refuse is not None:
            refuse(exc, self, extra)
        else:  # not our channel: the plain 400-and-close
            self.channel._respondToBadRequestAndDisconnect()

    def gotLength(self, length: int | None) -> None:
        self.content = io.BytesIO()
        self._received = 0
        if length == 0:
            return  # no body to store: the resource judges it
        policy = self._policy()
        if policy is None:
            return
        path = getattr(self.channel, "_path", b"") or b""
        query = path.split(b"?", 1)[1] if b"?" in path else b""
        cookie = self.received_cookies.get(COOKIE.encode())
        exc = guard.head_error(policy, _headers(self), query, cookie.decode("latin-1") if cookie else None, length)
        if exc is not None:
            self._refuse(exc)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        policy = self._policy()
        limit = policy.max_body if policy else MAX_BODY
        if self._received > limit:
            self._refuse(guard.body_too_large(limit))
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)


class Api(resource.Resource):
    """The whole HTTP surface as one leaf resource (routes in :meth:`render`)."""

    isLeaf = True

    def __init__(self, bridge: Bridge, config: WebConfig) -> None:
        super().__init__()
        self.bridge = bridge
        self.config = config
        self.live = live.LiveStreams(bridge)
        self.views = views.ViewStore(Path(bridge.settings.home) / "views")
        self.operator = OperatorRoutes(self, OperatorGate(bridge))

    def start(self) -> None:
        """Start the SSE keep-alive timer and the operator sessions' sweep (call once
        the reactor runs)."""
        self.live.start()
        self.operator.gate.start()

    # -- plumbing ---------------------------------------------------------
    def _cors(self, request) -> None:
        if request.path.startswith(OperatorRoutes.PREFIX.encode()):
            return  # operator routes: same origin only
        for k, v in guard.cors_headers(request.getHeader("origin"), self.config.policy.cors_origins).items():
            request.setHeader(k, v)

    def _authorized(self, request) -> bool | str:
        """True if the request carries the token (or none is needed); ``"redirect"``
        when a browser page carried it in ``?token=`` and must now be sent to the
        same page without it (the cookie carries it from then on)."""
        token = self.config.token
        if not token:
            return True
        headers = _headers(request)
        query = request.uri.split(b"?", 1)[1] if b"?" in request.uri else b""
        ok, in_query = guard.token_given(headers, query, _cookie(request), token)
        if not (ok and in_query):
            return ok
        https = guard.is_https(request.isSecure(), headers, self.config.policy.trust_proxy)
        request.addCookie(COOKIE, token, **guard.cookie_attributes(https))
        if request.method in (b"GET", b"HEAD") and guard.is_navigation(headers):
            return "redirect"
        return True

    @staticmethod
    def _send(request, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        if getattr(request, "_sisock_gone", False):
            return
        request.setResponseCode(status)
        request.setHeader("content-type", content_type)
        request.setHeader("content-length", str(len(body)))
        request.setHeader("cache-control", "no-store")
        for k, v in (headers or {}).items():
            request.setHeader(k, v)
        request.write(body)
        request.finish()

    def _json(self, request, obj: Any, status: int = 200) -> None:
        body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
        self._send(request, status, body, "application/json")

    def _error(self, request, exc: WebError) -> None:
        self._json(request, exc.body(), exc.status)

    def render(self, request):
        request._sisock_gone = False
        request.notifyFinish().addErrback(lambda _: setattr(request, "_sisock_gone", True))
        for k, v in guard.SECURITY_HEADERS.items():
            request.setHeader(k, v)
        self._cors(request)
        method = request.method.decode(errors="replace")
        path = unquote(request.path.decode(errors="replace"))
        host = _host(request)
        refused = None
        if not guard.host_allowed(host, self.config.policy.allowed_hosts):
            refused = guard.host_error(host)
        else:
            refused = guard.bad_path(path)
        if refused is not None:
            self._error(request, refused)
            return server.NOT_DONE_YET
        if method == "OPTIONS":
            request.setResponseCode(204)
            return b""
        ensureDeferred(self._dispatch(request, method, path))
        return server.NOT_DONE_YET

    def _redirect(self, request) -> None:
        """303 to the same page without ``?token=`` (a relative URL: proxy prefixes hold)."""
        raw = request.uri.decode("latin-1")
        path, _, query = raw.partition("?")
        body = json.dumps({"location": guard.without_token(path, query)}).encode()
        self._send(request, 303, body, "application/json", {"location": guard.without_token(path, query)})

    async def _dispatch(self, request, method: str, path: str) -> None:
        try:
            authorized = self._authorized(request)
            if not authorized:
                raise guard.unauthorized()
            if authorized == "redirect":
                return self._redirect(request)
            handler, allowed = self._route(method, path)
            if handler is None:
                if allowed:
                    raise WebError("method_not_allowed", f"{path} accepts {', '.join(allowed)}, not {method}")
                raise WebError(
                    "not_found", f"no such path {path!r}: see /api/nodes, /api/data, /api/live, /search, /query"
                )
            await handler(request, path)
        except WebError as exc:
            self._error(request, exc)
        except (RecursionError, ValueError, UnicodeError) as exc:  # caller input Python refused
            log.info("request {path} refused: {e!r}", path=path, e=exc)
            self._error(request, bad(f"the request could not be read: {type(exc).__name__}"))
        except Exception as exc:
            log.failure("request {path} failed", path=path)
            self._error(request, WebError("internal", f"{type(exc).__name__}: {exc}"))

    def _route(self, method: str, path: str) -> tuple[Callable | None, list[str]]:
        table = {
            "/": {"GET": self.root, "HEAD": self.root, "POST": self.root},
            "/search": {"POST": self.search},
            "/query": {"POST": self.query},
            "/annotations": {"POST": self.annotations},
            "/tag-keys": {"POST": self.tag_keys},
            "/tag-values": {"POST": self.tag_values},
            "/api/nodes": {"GET": self.api_nodes},
            "/api/data": {"GET": self.api_data},
            "/api/live": {"GET": self.api_live},
            "/api/status": {"GET": self.api_status},
        }
        key = path.rstrip("/") or "/"
        if key.startswith("/api/nodes/") and key.endswith("/fields"):
            key = "/api/nodes/*/fields"
            table[key] = {"GET": self.api_fields}
        if key == "/api/views" or key.startswith("/api/views/"):
            table[key] = dict.fromkeys(("GET", "POST", "DELETE"), self.api_views)
        if key.startswith(OperatorRoutes.PREFIX):
            table[key] = dict.fromkeys(("GET", "POST"), self._operator)
        if key.startswith("/assets/") or key in ("/index.html", "/favicon.ico"):
            table[key] = {"GET": self.static}
        methods = table.get(key)
        if methods is None:
            return None, []
        return methods.get(method), sorted(methods)

    def _body(self, request) -> Any:
        raw = request.content.read(MAX_BODY + 1) if request.content else b""
        if len(raw) > MAX_BODY:
            raise guard.body_too_large(MAX_BODY)
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except RecursionError:
            raise bad("the request body must be JSON nested less deeply") from None
        except ValueError as exc:
            raise bad(f"the request body must be JSON: {exc}") from None

    # -- health and dashboard ----------------------------------------------------
    async def root(self, request, path) -> None:
        if request.method == b"GET" and _wants_html(request):
            return await self.static(request, "/index.html")
        if self.bridge.connected:
            self._json(request, {"status": "ok", "router": self.bridge.settings.router_url})
        else:
            self._error(
                request,
                WebError("router_unavailable", f"not connected to the router at {self.bridge.settings.router_url}"),
            )

    async def api_status(self, request, path) -> None:
        self._json(
            request,
            {
                "connected": self.bridge.connected,
                # while the router is away neither the hub nor its list can be known
                "hub": self.bridge.connected and self.bridge.hub_seen,
                "router": self.bridge.settings.router_url,
                "nodes": sorted(self.bridge.nodes) if self.bridge.connected else [],
                "time": time.time(),
                "node_calls": self.bridge.limiter.stats(),
            },
        )

    async def static(self, request, path) -> None:
        root = self.config.static_dir
        name = "index.html" if path in ("/", "/index.html") else path.split("/", 2)[-1]
        if root is None or not (Path(root) / "index.html").exists():
            if name == "index.html":
                page = (
                    "<!doctype html><title>sisock</title><p>The dashboard is not built: "
                    "run <code>make install</code> (npm ci and the build in <code>web/</code>)."
                    " The API works: <a href='/api/nodes'>/api/nodes</a>.</p>"
                )
                return self._send(request, 200, page.encode(), "text/html; charset=utf-8")
            raise WebError("not_found", f"no static file {path!r}")
        base = Path(root).resolve()
        if guard.bad_path(name) is not None:
            raise bad("the path holds a control character (such as NUL)")
        file = (base / name).resolve()
        if base not in file.parents or not file.is_file():
            raise WebError("not_found", f"no static file {path!r}")
        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self._send(request, 200, file.read_bytes(), ctype)

    # -- REST -----------------------------------------------------------------
    async def api_nodes(self, request, path) -> None:
        self._json(request, await self.bridge.listed())

    async def api_fields(self, request, path) -> None:
        node = parse_node(path.strip("/").split("/")[2])
        args = _args(request)
        if args.get("start") in (None, "") and args.get("end") in (None, ""):
            field, timeline, start, end = await self.bridge.recent_fields(node, _client(request))
        else:
            start, end = parse_range(args.get("start"), args.get("end"), default_start=1.0)
            field, timeline = await self.bridge.get_fields(node, start, end, _client(request))
        self._json(request, {"node": node, "start": start, "end": end, "field": field, "timeline": timeline})

    async def api_data(self, request, path) -> None:
        q = parse_data_query(_args(request))
        limit = self.config.max_values
        check_budget(q.end - q.start, q.min_stride, len(q.fields), q.method, limit)
        result = await self.bridge.get_data(
            q.node, q.fields, q.start, q.end, q.min_stride, q.method, client=_client(request)
        )
        empty = [f for f in q.fields if not len(result.data.get(f, ()))]
        if empty:  # no data, or no such field: tell which
            known, _ = await self.bridge.get_fields(q.node, 1.0, time.time() + 86400, _client(request))
            unknown = [f for f in empty if f not in known]
            if unknown:
                listed = ", ".join(sorted(known)[:50]) + (" ..." if len(known) > 50 else "")
                raise WebError(
                    "unknown_field",
                    f"data node {q.node!r} has no field(s) {', '.join(unknown)}; its fields: {listed or '(none)'}",
                    fields=unknown,
                )
            bools = [f for f in q.fields if known.get(f, {}).get("type") == "bool"]
        else:
            bools = [
                f
                for f, i in (await self.bridge.field_info(q.node, q.fields, q.start, q.end, _client(request))).items()
                if i.get("type") == "bool"
            ]
        encode.bools_as_bools(result, bools, q.min_stride, q.method)
        n = encode.count_values(result)
        if n > limit:
            raise too_much(q.end - q.start, len(q.fields), q.method, limit, n)
        media_type = encoders.WEB_FORMATS[q.format]
        if media_type == encoders.FRAME:
            body = await _in_thread(n, encoders.encode, media_type, result, q)
            return self._send(request, 200, body, media_type)
        if media_type == encoders.CSV:
            text = await _in_thread(n, encoders.encode, media_type, result, q)
            name = f"{q.node}_{int(q.start)}_{int(q.end)}.csv"
            return self._send(
                request,
                200,
                text.encode(),
                "text/csv; charset=utf-8",
                {"content-disposition": f'attachment; filename="{name}"'},
            )
        body = await _in_thread(
            n, lambda: json.dumps(encoders.encode(media_type, result, q), separators=(",", ":")).encode()
        )
        self._send(request, 200, body, media_type)

    async def _operator(self, request, path) -> None:
        await self.operator.handle(request, request.method.decode(), path)

    async def api_views(self, request, path) -> None:
        why = guard.write_allowed(
            request.method.decode(),
            request.getHeader("content-type"),
            request.getHeader("origin"),
            request.getHeader("host"),
            tuple(self.config.policy.cors_origins),
        )
        if why:
            raise WebError("forbidden", why)
        body = self._body(request) if request.method == b"POST" else None
        # the views are files: read and written off the reactor thread
        status, doc = await threads.deferToThread(self.views.handle, request.method.decode(), path, body)
        self._json(request, doc, status)

    # -- live (Server-Sent Events) ----------------------------------------------
    async def api_live(self, request, path) -> None:
        await self.live.serve(request, _args(request))

    # -- Grafana SimpleJSON -----------------------------------------------------
    def _targets(self) -> list[str]:
        out = []
        for node in self.bridge.nodes:
            for f in self.bridge._cached_fields(node):
                out.append(f"{node}{grafana.SEPARATOR}{f}")
        return out

    async def search(self, request, path) -> None:
        body = self._body(request)
        term = body.get("target") if isinstance(body, dict) else None
        await self.bridge.refresh()
        missing = [n for n in self.bridge.nodes if not self.bridge._cached_fields(n)]
        await _gather([self._fields_quietly(n, _client(request)) for n in missing])
        self._json(request, grafana.search(self._targets(), term))

    async def _fields_quietly(self, node: str, client: str = "") -> None:
        try:
            await self.bridge.recent_fields(node, client)
        except WebError as exc:
            log.warn("get_fields of {node} failed: {m}", node=node, m=exc.message)

    async def query(self, request, path) -> None:
        """Grafana ``/query``: every target's answer together within ``max_values``.

        Unknown nodes are answered from the hub's list without a call;
        calls to nodes wait for :class:`~sisock.web.limits.FairLimiter`
        slots, in turn with other clients; the answer is encoded in a thread.
        """
        q = grafana.parse_query(self._body(request))
        limit = self.config.max_values
        groups = q.by_node()
        span = q.end - q.start
        check_total_budget(span, q.min_stride, [(len(fields), method) for (_, method), fields in groups.items()], limit)
        client = _client(request)
        total = [0]

        async def one(node, method, fields):
            try:
                result = await self.bridge.get_data(node, fields, q.start, q.end, q.min_stride, method, client=client)
                total[0] += encode.count_values(result)
                if total[0] > limit:
                    raise _WholeAnswer(too_much(span, sum(map(len, groups.values())), None, limit, total[0]))
                info = await self.bridge.field_info(node, fields, q.start, q.end, client)
                return result, info, None
            except WebError as exc:
                if exc.error == "router_unavailable":
                    raise
                return None, {}, exc.message

        keys = list(groups)
        try:
            answers = dict(zip(keys, await _gather([one(n, m, groups[(n, m)]) for n, m in keys])))
        except _WholeAnswer as exc:
            raise exc.error from None
        body = await _in_thread(total[0], self._query_reply, q, answers)
        self._send(request, 200, body, "application/json")

    @staticmethod
    def _query_reply(q: grafana.GrafanaQuery, answers: dict) -> bytes:
        """The ``/query`` answer as JSON bytes (run in a thread; encoded in slices)."""
        import numpy as np

        out = []
        for t in q.targets:
            result, info, error = answers[(t.node, t.method)]
            times = values = np.zeros(0)
            if result is not None:
                tl = result["field_timeline"].get(t.field)
                values = np.asarray(result["data"].get(t.field, []))
                if tl in result["timeline"]:
                    times = np.asarray(result["timeline"][tl]["t"], dtype=float)
                else:
                    values = np.zeros(0)
                if not len(values) and not error:
                    error = (
                        None
                        if t.field in info
                        else f"data node {t.node!r} has no field {t.field!r} with data in this range"
                    )
            if t.kind == "table":
                kind = info.get(t.field, {}).get("type", "number")
                out.append(grafana.table_json(t.target, times, values, kind, error))
            else:
                out.append(grafana.timeserie_json(t.target, times, values, error))
        for target, message in q.invalid.items():
            out.append(grafana.timeserie_json(target, np.zeros(0), np.zeros(0), message))
        return ("[" + ",".join(out) + "]").encode()

    async def annotations(self, request, path) -> None:
        start, end, ann, node, fld = grafana.parse_annotation(self._body(request))
        if fld in grafana.WRITE_FIELDS:  # a writable node's operator writes: who set what
            result = await self.bridge.get_data(node, list(grafana.WRITE_FIELDS), start, end, client=_client(request))
            n = encode.count_values(result)
            if n > self.config.max_values:
                raise too_much(end - start, len(grafana.WRITE_FIELDS), None, self.config.max_values, n)
            tl = result["timeline"].get(result["field_timeline"].get(fld))
            return self._json(
                request, [] if tl is None else grafana.write_annotations(ann, node, tl["t"], result["data"])
            )
        result = await self.bridge.get_data(node, [fld], start, end, client=_client(request))
        n = encode.count_values(result)
        if n > self.config.max_values:
            raise too_much(end - start, 1, None, self.config.max_values, n)
        tl = result["field_timeline"].get(fld)
        if tl not in result["timeline"]:
            return self._json(request, [])

        def reply() -> bytes:
            marks = grafana.annotations(ann, node, fld, result["timeline"][tl]["t"], result["data"][fld])
            return json.dumps(marks, separators=(",", ":"), allow_nan=False).encode()

        self._send(request, 200, await _in_thread(n, reply), "application/json")

    async def tag_keys(self, request, path) -> None:
        self._body(request)
        self._json(request, [{"type": "string", "text": "node"}])

    async def tag_values(self, request, path) -> None:
        body = self._body(request)
        key = body.get("key") if isinstance(body, dict) else None
        if key != "node":
            raise bad(f"body member 'key' must be 'node' (see /tag-keys), got {key!r}")
        nodes = await self.bridge.refresh()
        self._json(request, [{"text": n["name"]} for n in nodes])


class _WholeAnswer(Exception):
    """The answers of a ``/query`` together pass the value limit."""

    def __init__(self, error: WebError) -> None:
        super().__init__(error.message)
        self.error = error


async def _gather(coros: list) -> list:
    """Run coroutines concurrently on the reactor; results in order."""
    from twisted.internet.defer import gatherResults

    ds = [ensureDeferred(c) for c in coros]
    try:
        return await gatherResults(ds, consumeErrors=True)
    except Exception as exc:  # FirstError wraps the first failure
        sub = getattr(exc, "subFailure", None)
        if sub is not None:
            sub.raiseException()
        raise


def make_site(bridge: Bridge, config: WebConfig) -> tuple[server.Site, Api]:
    """The ``twisted.web`` site serving ``bridge``."""
    from twisted.internet import reactor

    api = Api(bridge, config)
    site = server.Site(api, timeout=IDLE_TIMEOUT, logFormatter=access_log_line)
    site.protocol = Channel
    site.requestFactory = GuardedRequest
    site.api = api
    site.displayTracebacks = False
    reactor.callWhenRunning(api.start)
    return site, api
