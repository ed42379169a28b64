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
``GET /api/live?node=N``    Server-Sent Events relaying ``{base}.consumer.N.live``
``GET /assets/...``         the dashboard's built files
==========================  ==================================================

Work that can take long (encoding a big answer) runs in a thread.
"""

from __future__ import annotations

import hmac
import json
import mimetypes
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

from twisted.internet import threads
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web import resource, server

from . import encode, grafana
from .consumer import Bridge
from .errors import WebError, bad
from .params import check_budget, parse_data_query, parse_node, parse_range, too_much

log = Logger(namespace="sisock.web")

#: Largest request body accepted (Grafana bodies are a few kB).
MAX_BODY = 1 << 20
#: Seconds between SSE keep-alive comments (proxies drop idle streams).
KEEPALIVE = 15.0
COOKIE = "sisock_token"


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
        Most values one ``/api/data`` or ``/query`` answer may hold.
    """

    def __init__(self, token: str | None = None, cors_origins: list[str] | None = None,
                 static_dir: Path | None = None, max_values: int = 20_000_000) -> None:
        self.token = token or None
        self.cors_origins = list(cors_origins or [])
        self.static_dir = static_dir
        self.max_values = max_values


def _args(request) -> dict[str, str]:
    return {k.decode(errors="replace"): v[-1].decode(errors="replace")
            for k, v in request.args.items() if v}


def _wants_html(request) -> bool:
    accept = (request.getHeader("accept") or "").lower()
    return "text/html" in accept


class Api(resource.Resource):
    """The whole HTTP surface as one leaf resource (routes in :meth:`render`)."""

    isLeaf = True

    def __init__(self, bridge: Bridge, config: WebConfig) -> None:
        super().__init__()
        self.bridge = bridge
        self.config = config
        self.streams: set = set()
        self._keepalive = LoopingCall(self._ping)

    def start(self) -> None:
        """Start the SSE keep-alive timer (call once the reactor runs)."""
        if not self._keepalive.running:
            self._keepalive.start(KEEPALIVE, now=False)

    # -- plumbing ---------------------------------------------------------
    def _cors(self, request) -> None:
        origin = request.getHeader("origin")
        if not origin or not self.config.cors_origins:
            return
        if "*" in self.config.cors_origins:
            request.setHeader("access-control-allow-origin", "*")
        elif origin in self.config.cors_origins:
            request.setHeader("access-control-allow-origin", origin)
            request.setHeader("vary", "Origin")
        else:
            return
        request.setHeader("access-control-allow-methods", "GET, POST, OPTIONS")
        request.setHeader("access-control-allow-headers", "Authorization, Content-Type")
        request.setHeader("access-control-max-age", "600")

    def _authorized(self, request) -> bool:
        token = self.config.token
        if not token:
            return True
        given = []
        auth = request.getHeader("authorization") or ""
        if auth.lower().startswith("bearer "):
            given.append(auth[7:].strip())
        q = request.args.get(b"token")
        if q:
            given.append(q[-1].decode(errors="replace"))
        cookie = request.getCookie(COOKIE.encode())
        if cookie:
            given.append(cookie.decode(errors="replace"))
        ok = any(hmac.compare_digest(g.encode(), token.encode()) for g in given)
        if ok and q:  # a page opened with ?token= keeps working for its assets and fetches
            request.addCookie(COOKIE, token, path="/", httpOnly=True, sameSite="strict")
        return ok

    @staticmethod
    def _send(request, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
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
        self._cors(request)
        method = request.method.decode()
        path = unquote(request.path.decode(errors="replace"))
        if method == "OPTIONS":
            request.setResponseCode(204)
            return b""
        ensureDeferred(self._dispatch(request, method, path))
        return server.NOT_DONE_YET

    async def _dispatch(self, request, method: str, path: str) -> None:
        try:
            if not self._authorized(request):
                raise WebError("unauthorized", "this server needs an access token: send "
                               "'Authorization: Bearer <token>' or open the page with ?token=<token>")
            handler, allowed = self._route(method, path)
            if handler is None:
                if allowed:
                    raise WebError("method_not_allowed",
                                   f"{path} accepts {', '.join(allowed)}, not {method}")
                raise WebError("not_found", f"no such path {path!r}: see /api/nodes, /api/data, "
                               "/api/live, /search, /query")
            await handler(request, path)
        except WebError as exc:
            self._error(request, exc)
        except Exception as exc:  # noqa: BLE001 - never a stack trace to the caller
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
        if key.startswith("/assets/") or key in ("/index.html", "/favicon.ico"):
            table[key] = {"GET": self.static}
        methods = table.get(key)
        if methods is None:
            return None, []
        return methods.get(method), sorted(methods)

    def _body(self, request) -> Any:
        raw = request.content.read(MAX_BODY + 1) if request.content else b""
        if len(raw) > MAX_BODY:
            raise WebError("body_too_large", f"request body over the limit of {MAX_BODY} bytes")
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise bad(f"the request body must be JSON: {exc}") from None

    # -- health and dashboard ----------------------------------------------------
    async def root(self, request, path) -> None:
        if request.method == b"GET" and _wants_html(request):
            return await self.static(request, "/index.html")
        if self.bridge.connected:
            self._json(request, {"status": "ok", "router": self.bridge.settings.router_url})
        else:
            self._error(request, WebError("router_unavailable",
                                          f"not connected to the router at "
                                          f"{self.bridge.settings.router_url}"))

    async def api_status(self, request, path) -> None:
        self._json(request, {"connected": self.bridge.connected, "hub": self.bridge.hub_seen,
                             "router": self.bridge.settings.router_url,
                             "nodes": sorted(self.bridge.nodes), "time": time.time()})

    async def static(self, request, path) -> None:
        root = self.config.static_dir
        name = "index.html" if path in ("/", "/index.html") else path.split("/", 2)[-1]
        if root is None or not (Path(root) / "index.html").exists():
            if name == "index.html":
                page = ("<!doctype html><title>sisock</title><p>The dashboard is not built: "
                        "run <code>make install</code> (npm ci and the build in <code>web/</code>)."
                        " The API works: <a href='/api/nodes'>/api/nodes</a>.</p>")
                return self._send(request, 200, page.encode(), "text/html; charset=utf-8")
            raise WebError("not_found", f"no static file {path!r}")
        base = Path(root).resolve()
        file = (base / name).resolve()
        if base not in file.parents or not file.is_file():
            raise WebError("not_found", f"no static file {path!r}")
        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self._send(request, 200, file.read_bytes(), ctype)

    # -- REST -----------------------------------------------------------------
    async def api_nodes(self, request, path) -> None:
        self._json(request, await self.bridge.refresh())

    async def api_fields(self, request, path) -> None:
        node = parse_node(path.strip("/").split("/")[2])
        args = _args(request)
        if args.get("start") in (None, "") and args.get("end") in (None, ""):
            field, timeline, start, end = await self.bridge.recent_fields(node)
        else:
            start, end = parse_range(args.get("start"), args.get("end"), default_start=1.0)
            field, timeline = await self.bridge.get_fields(node, start, end)
        self._json(request, {"node": node, "start": start, "end": end,
                             "field": field, "timeline": timeline})

    async def api_data(self, request, path) -> None:
        q = parse_data_query(_args(request))
        limit = self.config.max_values
        check_budget(q.end - q.start, q.min_stride, len(q.fields), q.method, limit)
        result = await self.bridge.get_data(q.node, q.fields, q.start, q.end,
                                            q.min_stride, q.method)
        n = encode.count_values(result)
        if n > limit:
            raise too_much(q.end - q.start, len(q.fields), q.method, limit, n)
        if q.format == "binary":
            body = await threads.deferToThread(encode.to_binary, q, result)
            return self._send(request, 200, body, encode.BINARY_TYPE)
        if q.format == "csv":
            text = await threads.deferToThread(encode.to_csv, q.fields, result)
            name = f"{q.node}_{int(q.start)}_{int(q.end)}.csv"
            return self._send(request, 200, text.encode(), "text/csv; charset=utf-8",
                              {"content-disposition": f'attachment; filename="{name}"'})
        body = await threads.deferToThread(
            lambda: json.dumps(encode.to_json(q, result), separators=(",", ":")).encode())
        self._send(request, 200, body, "application/json")

    # -- live (Server-Sent Events) ----------------------------------------------
    async def api_live(self, request, path) -> None:
        node = parse_node(_args(request).get("node"))
        if not self.bridge.connected:
            raise WebError("router_unavailable", "not connected to the router; retry later")
        if self.bridge.hub_seen and node not in self.bridge.nodes:
            await self.bridge.refresh()
            if node not in self.bridge.nodes:
                raise WebError("not_found", f"no data node named {node!r} (see /api/nodes)")
        request.setResponseCode(200)
        request.setHeader("content-type", "text/event-stream; charset=utf-8")
        request.setHeader("cache-control", "no-store")
        request.setHeader("x-accel-buffering", "no")  # nginx: do not buffer the stream

        def send(event: str, payload: dict) -> None:
            if request._sisock_gone:
                return
            data = json.dumps(payload, separators=(",", ":"), allow_nan=False)
            request.write(f"event: {event}\ndata: {data}\n\n".encode())

        stop = await self.bridge.listen(node, send)
        self.streams.add(request)

        def closed(_):
            stop()
            self.streams.discard(request)

        request.notifyFinish().addBoth(closed)
        request.write(b"retry: 2000\n\n")
        send("hello", {"node": node, "connected": self.bridge.connected})

    def _ping(self) -> None:
        for request in list(self.streams):
            if not request._sisock_gone:
                request.write(b": keep-alive\n\n")

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
        await _gather([self._fields_quietly(n) for n in missing])
        self._json(request, grafana.search(self._targets(), term))

    async def _fields_quietly(self, node: str) -> None:
        try:
            await self.bridge.recent_fields(node)
        except WebError as exc:
            log.warn("get_fields of {node} failed: {m}", node=node, m=exc.message)

    async def query(self, request, path) -> None:
        q = grafana.parse_query(self._body(request))
        limit = self.config.max_values
        groups = q.by_node()
        for (node, method), fields in groups.items():
            check_budget(q.end - q.start, q.min_stride, len(fields), method, limit)

        async def one(node, method, fields):
            try:
                result = await self.bridge.get_data(node, fields, q.start, q.end,
                                                    q.min_stride, method)
                if encode.count_values(result) > limit:
                    raise too_much(q.end - q.start, len(fields), method, limit,
                                   encode.count_values(result))
                info = await self.bridge.field_info(node, fields, q.start, q.end)
                return result, info, None
            except WebError as exc:
                if exc.error == "router_unavailable":
                    raise
                return None, {}, exc.message

        keys = list(groups)
        answers = dict(zip(keys, await _gather([one(n, m, groups[(n, m)]) for n, m in keys])))
        out = await threads.deferToThread(self._query_reply, q, answers)
        self._json(request, out)

    @staticmethod
    def _query_reply(q: grafana.GrafanaQuery, answers: dict) -> list[dict]:
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
                    error = None if t.field in info else \
                        f"data node {t.node!r} has no field {t.field!r} with data in this range"
            if t.kind == "table":
                kind = info.get(t.field, {}).get("type", "number")
                out.append(grafana.table(t.target, times, values, kind, error))
            else:
                out.append(grafana.timeserie(t.target, times, values, error))
        for target, message in q.invalid.items():
            out.append(grafana.timeserie(target, np.zeros(0), np.zeros(0), message))
        return out

    async def annotations(self, request, path) -> None:
        start, end, ann, node, fld = grafana.parse_annotation(self._body(request))
        if fld in grafana.WRITE_FIELDS:  # a writable node's operator writes: who set what
            result = await self.bridge.get_data(node, list(grafana.WRITE_FIELDS), start, end)
            tl = result["timeline"].get(result["field_timeline"].get(fld))
            return self._json(request, [] if tl is None else grafana.write_annotations(
                ann, node, tl["t"], result["data"]))
        result = await self.bridge.get_data(node, [fld], start, end)
        tl = result["field_timeline"].get(fld)
        if tl not in result["timeline"]:
            return self._json(request, [])
        out = await threads.deferToThread(grafana.annotations, ann, node, fld,
                                          result["timeline"][tl]["t"], result["data"][fld])
        self._json(request, out)

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
    site = server.Site(api)
    site.displayTracebacks = False
    reactor.callWhenRunning(api.start)
    return site, api
