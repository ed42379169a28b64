"""Operator sign-in and writes for the dashboard (``/api/operator/...``).

Routes (every error is JSON ``{"error", "message", "request_id", "point"}``):

==================================  ===============================================
``POST /api/operator/signin``       ``{"authid", "secret"}``: join the router with
                                    WAMP-CRA under that account (role ``operator``);
                                    answers ``{"authid", "csrf", "expires"}`` and
                                    sets the session cookie
``GET  /api/operator/session``      ``{"signed_in", "authid", "csrf", ...}``
``POST /api/operator/signout``      closes the operator's WAMP session
``GET  /api/operator/N/points``     the node's writable points, each with its
                                    latest value and whether its device answers
``POST /api/operator/N/set``        ``{"point", "value", "request_id", "dry_run",
                                    "expected", "reason"}``
``GET  /api/operator/N/audit``      ``?start=&end=`` (the node's audit records)
==================================  ===============================================

Security (``docs/operating.md``, "The dashboard"):

* the bridge keeps one WAMP session per signed-in operator, under the
  operator's own account, so the node sees the real person; the secret is
  used for that join only and kept by autobahn for re-joins, never sent back;
* the browser holds a random session id in an HttpOnly, ``SameSite=Strict``
  cookie (``Secure`` over HTTPS), and a CSRF token it reads from the
  sign-in answer: every POST must carry ``X-Sisock-CSRF`` (the token; for
  the sign-in, which has none yet, the literal ``signin``) and a JSON body,
  which a cross-site form cannot send, and an ``Origin``, when given, must be
  this bridge; these routes never answer CORS;
* sessions end after :data:`IDLE` seconds without a request, or
  :data:`LIFETIME` seconds after sign-in.

The top half (:class:`SessionStore`, :func:`refusal`, :func:`parse_set`,
:func:`csrf_error`) is pure; :class:`OperatorGate` is the twisted shell.
"""

from __future__ import annotations

import hmac
import math
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.logger import Logger

from .errors import WebError, bad
from .request import _args, _client, _headers

log = Logger(namespace="sisock.web.operator")

#: The session cookie (scoped by the browser to ``/api/operator/``).
COOKIE = "sisock_operator"
#: The header every POST must carry.
CSRF_HEADER = "x-sisock-csrf"
#: Seconds a session lives without a request.
IDLE = 30 * 60.0
#: Seconds a session lives at most.
LIFETIME = 12 * 3600.0
#: Signed-in browser sessions at once (all operators together).
MAX_SESSIONS = 256
#: Seconds a sign-in waits for the router.
SIGNIN_TIMEOUT = 15.0
#: Failed sign-ins one client address may make per :data:`FAIL_WINDOW` seconds.
MAX_FAILURES = 10
FAIL_WINDOW = 60.0
#: Sign-ins in progress at once (each opens a router connection).
MAX_SIGNINS = 4
#: Seconds between two sweeps of expired sessions.
SWEEP = 30.0

#: Write refusals (``{base}.error.<name>``) -> HTTP status.
REFUSAL_STATUS = {
    "not_authorized": 403,
    "unknown_point": 404,
    "out_of_limits": 422,
    "bad_argument": 422,
    "conflict": 409,
    "expired": 410,
    "rate_limited": 429,
    "device_unavailable": 503,
}


# -- pure -----------------------------------------------------------------------


@dataclass
class Session:
    """One signed-in browser session."""

    sid: str
    authid: str
    csrf: str
    created: float
    seen: float

    def expires(self) -> float:
        """When it ends if no request comes before."""
        return min(self.seen + IDLE, self.created + LIFETIME)


@dataclass
class SessionStore:
    """Browser sessions by id, with expiry (``clock`` is injectable for tests)."""

    clock: Callable[[], float] = time.time
    sessions: dict[str, Session] = field(default_factory=dict)

    def create(self, authid: str) -> Session:
        now = self.clock()
        s = Session(secrets.token_urlsafe(32), authid, secrets.token_urlsafe(32), now, now)
        self.sessions[s.sid] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        """The live session ``sid`` (its idle clock restarted), or None."""
        s = self.sessions.get(sid or "")
        if s is None:
            return None
        now = self.clock()
        if now >= s.expires():
            return None
        s.seen = now
        return s

    def remove(self, sid: str) -> Session | None:
        return self.sessions.pop(sid, None)

    def expired(self) -> list[Session]:
        """Remove and return every session past its end."""
        now = self.clock()
        gone = [s for s in self.sessions.values() if now >= s.expires()]
        for s in gone:
            del self.sessions[s.sid]
        return gone

    def of(self, authid: str) -> list[Session]:
        return [s for s in self.sessions.values() if s.authid == authid]


@dataclass
class Throttle:
    """Failed sign-ins per client address: at most :data:`MAX_FAILURES` per
    :data:`FAIL_WINDOW` seconds (guessing secrets through the bridge is slow)."""

    clock: Callable[[], float] = time.time
    failures: dict[str, list[float]] = field(default_factory=dict)

    def check(self, who: str) -> None:
        now = self.clock()
        recent = [t for t in self.failures.get(who, []) if now - t < FAIL_WINDOW]
        if recent:
            self.failures[who] = recent
        else:
            self.failures.pop(who, None)
        if len(recent) >= MAX_FAILURES:
            wait = FAIL_WINDOW - (now - recent[0])
            raise WebError(
                "too_many_requests", f"{len(recent)} failed sign-ins from this address: try again in {wait:.0f} s"
            )

    def failed(self, who: str) -> None:
        self.failures.setdefault(who, []).append(self.clock())
        if len(self.failures) > 10_000:  # many addresses: forget the oldest
            for k in list(self.failures)[:5_000]:
                del self.failures[k]


def csrf_error(
    method: str, headers: dict[str, str], expected: str | None, host: str | None, https: bool
) -> WebError | None:
    """Why a request fails the CSRF checks (None when it passes).

    A POST must carry :data:`CSRF_HEADER` equal to ``expected`` (``"signin"``
    for the sign-in) and a JSON content type; an ``Origin`` header, when
    present, must name this host. GETs only read and pass.
    """
    if method != "POST":
        return None
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin)
        scheme = "https" if https else "http"
        if origin == "null" or parts.netloc.lower() != (host or "").lower() or parts.scheme not in (scheme, "https"):
            return WebError("forbidden", f"cross-origin request refused (Origin {origin!r})", status=403)
    given = headers.get(CSRF_HEADER, "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return WebError(
            "forbidden", f"the request lacks the {CSRF_HEADER} header of this session (sign in again)", status=403
        )
    ctype = (headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        return WebError(
            "bad_argument", f"the body must be JSON (content-type: application/json), not {ctype or 'nothing'!r}"
        )
    return None


def refusal(base: str, uri: str, args: Any, kwargs: Any, node: str) -> WebError:
    """The HTTP error of a WAMP error from an operator call."""
    kwargs = kwargs or {}
    message = str(args[0]) if args else uri
    extra = {"request_id": kwargs.get("request_id"), "point": kwargs.get("point")}
    if uri == "wamp.error.no_such_procedure":
        return WebError(
            "not_writable", f"node {node!r} offers no operator writes (or is not running)", status=404, **extra
        )
    if uri in ("wamp.error.not_authorized", "wamp.error.authorization_failed"):
        return WebError("not_authorized", f"the router refused: {message}", status=403, **extra)
    prefix = f"{base}.error."
    name = uri[len(prefix) :] if uri.startswith(prefix) else None
    if name in REFUSAL_STATUS:
        return WebError(name, message, status=REFUSAL_STATUS[name], **extra)
    return WebError("node_error", f"node {node!r}: {message} [{uri}]", **extra)


def parse_set(body: Any) -> dict:
    """``{point, value, request_id, dry_run, expected, reason}`` of a set POST."""
    if not isinstance(body, dict):
        raise bad("the body must be a JSON object {point, value, request_id, ...}")
    unknown = set(body) - {"point", "value", "request_id", "dry_run", "expected", "reason"}
    if unknown:
        raise bad(f"unknown member(s) {sorted(unknown)} (point, value, request_id, dry_run, expected, reason)")
    point, rid = body.get("point"), body.get("request_id")
    if not isinstance(point, str) or not point:
        raise bad("'point' must be a point name")
    if not isinstance(rid, str) or not 8 <= len(rid) <= 64:
        raise bad("'request_id' must be a string of 8 to 64 characters (a UUID per submit)")
    if "value" not in body:
        raise bad("'value' is required")
    # the value itself is the node's to judge, so that a wrong one is in its audit log
    if not isinstance(body.get("dry_run", False), bool):
        raise bad("'dry_run' must be true or false")
    reason = body.get("reason") or ""
    if not isinstance(reason, str):
        raise bad("'reason' must be a string")
    out = {
        "point": point,
        "value": body["value"],
        "request_id": rid,
        "dry_run": bool(body.get("dry_run", False)),
        "reason": reason[:200],
    }
    if body.get("expected") is not None:
        out["expected"] = body["expected"]
    return out


def last_values(reply: dict, points: list[str], fields: dict) -> dict[str, dict]:
    """``{point: {value, t, ok}}`` from a ``get_data`` reply: the last sample of each
    point and whether its group's ``<timeline>_ok`` said the device answered."""
    out = {}
    data, timelines, owner = reply["data"], reply["timeline"], reply.get("field_timeline", {})
    for p in points:
        tl = owner.get(p) or fields.get(p, {}).get("timeline")
        t = list(timelines.get(tl, {}).get("t", [])) if tl else []
        values = list(data.get(p, []))
        ok_values = list(data.get(f"{tl}_ok", [])) if tl else []
        value = _plain(values[-1]) if values and t else None
        ok = bool(ok_values[-1]) if ok_values else value is not None
        if not ok:
            value = None  # a failed poll's placeholder (NaN, "" or False), not a reading
        out[p] = {"value": value, "t": float(t[-1]) if t else None, "ok": ok}
    return out


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# -- shell ----------------------------------------------------------------------


@dataclass
class _Conn:
    """One operator's WAMP session (shared by that operator's browser sessions)."""

    authid: str
    component: Any
    session: Any = None


class OperatorGate:
    """Sign-in, sessions and the operator calls of the web bridge.

    Parameters
    ----------
    bridge : Bridge
        The consumer bridge (its settings name the router; its session reads
        the points' latest values).
    connect : callable, optional
        ``connect(settings) -> component`` (default :func:`sisock.wamp.shell.make_component`).
    """

    def __init__(self, bridge: Any, connect: Callable | None = None) -> None:
        from sisock.wamp.shell import make_component

        self.bridge = bridge
        self.settings = bridge.settings
        self.connect = connect or make_component
        self.store = SessionStore()
        self.throttle = Throttle()
        self.signing_in = 0
        self.conns: dict[str, _Conn] = {}
        self._sweeper = None

    def start(self) -> None:
        from twisted.internet import task

        self._sweeper = task.LoopingCall(self.sweep)
        self._sweeper.start(SWEEP, now=False)

    def sweep(self) -> None:
        """End expired sessions, and the WAMP sessions no browser uses any more."""
        for s in self.store.expired():
            log.info("operator session of {a} expired", a=s.authid)
            self._release(s.authid)

    # -- WAMP -------------------------------------------------------------------
    async def sign_in(self, authid: str, secret: str, who: str = "") -> Session:
        """Join the router as ``authid``; a new browser session when it is an operator.

        ``who`` (the client's address) is throttled after failed attempts.
        """
        self.throttle.check(who)
        if self.signing_in >= MAX_SIGNINS:
            raise WebError("too_many_requests", "other sign-ins are in progress; try again")
        self.signing_in += 1
        try:
            return await self._sign_in(authid, secret)
        except WebError as exc:
            if exc.status == 403:
                self.throttle.failed(who)
            raise
        finally:
            self.signing_in -= 1

    async def _sign_in(self, authid: str, secret: str) -> Session:
        from twisted.internet import reactor

        if len(self.store.sessions) >= MAX_SESSIONS:
            self.sweep()
            if len(self.store.sessions) >= MAX_SESSIONS:
                raise WebError("too_many_requests", "too many operator sessions are open; try again later")
        component = self.connect(replace(self.settings, user=authid, secret=secret))
        joined: defer.Deferred = defer.Deferred()
        conn = _Conn(authid, component)

        def on_join(session, details):
            conn.session = session
            if not joined.called:
                joined.callback(getattr(details, "authrole", None))

        def on_leave(session, details):
            if conn.session is session:
                conn.session = None
            if not joined.called:
                joined.errback(WebError("not_authorized", "sign-in refused: wrong account name or secret", status=403))

        def on_fail(*args, **_k):
            if joined.called:
                return
            exc = args[-1] if args else None
            exc = getattr(exc, "value", exc)  # a Failure
            error = getattr(exc, "error", "") or ""
            if error.startswith("wamp.error.") and error != "wamp.error.no_such_realm":
                log.info("sign-in of {a} refused by the router: {e}", a=authid, e=error)
                joined.errback(WebError("not_authorized", "sign-in refused: wrong account name or secret", status=403))
            else:
                joined.errback(
                    WebError(
                        "router_unavailable", f"sign-in failed: cannot reach the router at {self.settings.router_url}"
                    )
                )

        component.on("join", on_join)
        component.on("leave", on_leave)
        component.on("connectfailure", on_fail)
        done = component.start(reactor)
        done.addErrback(lambda f: on_fail(f) or None)
        joined.addTimeout(SIGNIN_TIMEOUT, reactor)
        try:
            role = await joined
        except defer.TimeoutError:
            _stop(component)
            raise WebError(
                "router_unavailable", f"sign-in: no answer from the router within {SIGNIN_TIMEOUT:g} s"
            ) from None
        except WebError:
            _stop(component)
            raise
        if role != "operator":
            _stop(component)
            raise WebError(
                "not_authorized",
                f"account {authid!r} has role {role!r}: only an operator account may sign in here",
                status=403,
            )
        old = self.conns.get(authid)
        self.conns[authid] = conn
        if old is not None:
            _stop(old.component)
        log.info("operator {a} signed in", a=authid)
        return self.store.create(authid)

    def sign_out(self, sid: str | None) -> None:
        s = self.store.remove(sid or "")
        if s is not None:
            log.info("operator {a} signed out", a=s.authid)
            self._release(s.authid)

    def _release(self, authid: str) -> None:
        if not self.store.of(authid):
            conn = self.conns.pop(authid, None)
            if conn is not None:
                _stop(conn.component)

    async def call(self, s: Session, node: str, leaf: str, *args: Any, **kwargs: Any) -> Any:
        from autobahn.wamp.exception import ApplicationError

        from sisock.consumer.writes import operator_uri

        conn = self.conns.get(s.authid)
        if conn is None or conn.session is None:
            raise WebError("router_unavailable", "the operator's router session is down (reconnecting); try again")
        try:
            return await self.bridge._timed(
                conn.session.call(operator_uri(self.settings.uris.base, node, leaf), *args, **kwargs)
            )
        except ApplicationError as exc:
            raise refusal(self.settings.uris.base, exc.error, exc.args, exc.kwargs, node) from None

    async def points(self, s: Session, node: str) -> dict:
        """The node's points, each with its latest value, and whether the device answers."""
        specs = await self.call(s, node, "points")
        latest: dict[str, dict] = {}
        try:
            fields, _tl, _s, _e = await self.bridge.recent_fields(node, "operator")
            wanted = [p for p in specs if p in fields]
            wanted += sorted(
                {f"{fields[p]['timeline']}_ok" for p in wanted if f"{fields[p].get('timeline')}_ok" in fields}
            )
            if wanted:
                reply = await self.bridge.get_data(node, wanted, -30, 0, client="operator")
                latest = last_values(reply, [p for p in specs if p in fields], fields)
        except WebError as exc:
            log.info("latest values of {n}: {m}", n=node, m=exc.message)
        points = {}
        for name, spec in specs.items():
            points[name] = {**spec, **latest.get(name, {"value": None, "t": None, "ok": False})}
        device_ok = bool(points) and all(p["ok"] for p in points.values())
        return {"node": node, "points": points, "device_ok": device_ok, "time": time.time()}


def _stop(component: Any) -> None:
    try:
        d = component.stop()
        if isinstance(d, defer.Deferred):
            d.addErrback(lambda _f: None)
    except Exception:
        pass


class OperatorRoutes:
    """The ``/api/operator/...`` routes of :class:`~sisock.web.http.Api`."""

    PREFIX = "/api/operator/"

    def __init__(self, api: Any, gate: OperatorGate) -> None:
        self.api = api
        self.gate = gate

    def _https(self, request) -> bool:
        from . import guard

        return guard.is_https(request.isSecure(), _headers(request), self.api.config.policy.trust_proxy)

    def _session(self, request) -> Session | None:
        raw = request.received_cookies.get(COOKIE.encode())
        return self.gate.store.get(raw.decode("latin-1") if raw else None)

    def _check(self, request, method: str, expected: str | None) -> None:

        exc = csrf_error(method, _headers(request), expected, request.getHeader("host"), self._https(request))
        if exc is not None:
            raise exc

    def _cookie(self, request, value: str, max_age: int | None) -> None:
        from . import guard

        # no Path (as the token cookie): the browser scopes it to the directory of
        # the sign-in URL, /api/operator/ here and under a proxy's prefix behind one
        attrs = guard.cookie_attributes(self._https(request))
        request.addCookie(COOKIE, value, max_age=None if max_age is None else str(max_age), **attrs)

    async def handle(self, request, method: str, path: str) -> None:
        parts = path[len(self.PREFIX) :].strip("/").split("/")
        api = self.api
        if parts == ["signin"] and method == "POST":
            self._check(request, method, "signin")
            body = api._body(request)
            authid = body.get("authid") if isinstance(body, dict) else None
            secret = body.get("secret") if isinstance(body, dict) else None
            if (
                not isinstance(authid, str)
                or not authid
                or not isinstance(secret, str)
                or not secret
                or len(authid) > 128
                or len(secret) > 1024
            ):
                raise bad('the body must be {"authid": NAME, "secret": SECRET}')
            old = self._session(request)
            if old is not None:
                self.gate.sign_out(old.sid)

            s = await self.gate.sign_in(authid, secret, _client(request)[0])
            self._cookie(request, s.sid, int(LIFETIME))
            return api._json(request, self._describe(s))
        if parts == ["session"] and method == "GET":
            s = self._session(request)
            return api._json(request, self._describe(s) if s else {"signed_in": False})
        if parts == ["signout"] and method == "POST":
            s = self._session(request)
            self._check(request, method, s.csrf if s else None)
            self.gate.sign_out(s.sid)
            self._cookie(request, "", 0)
            return api._json(request, {"signed_in": False})
        if len(parts) != 2 or (parts[1], method) not in (("points", "GET"), ("set", "POST"), ("audit", "GET")):
            raise WebError(
                "not_found",
                f"no such path {path!r}: see /api/operator/signin, /api/operator/NODE/points, .../set, .../audit",
            )
        from .params import parse_node, parse_range

        node, leaf = parse_node(parts[0]), parts[1]
        s = self._session(request)
        if s is None:
            raise WebError("unauthorized", "sign in as an operator first (POST /api/operator/signin)")
        self._check(request, method, s.csrf)
        if leaf == "points":
            return api._json(request, await self.gate.points(s, node))
        if leaf == "audit":
            args = _args(request)
            start, end = parse_range(args.get("start") or "-86400", args.get("end") or "0", default_start=1.0)
            return api._json(request, await self.gate.call(s, node, "audit", start, end))
        body = api._body(request)
        given = body if isinstance(body, dict) else {}
        try:
            call = parse_set(body)
            out = await self.gate.call(
                s, node, "set", call.pop("point"), call.pop("value"), call.pop("request_id"), **call
            )
        except WebError as exc:
            for k in ("request_id", "point"):
                if exc.extra.get(k) is None:
                    exc.extra[k] = given.get(k) if isinstance(given.get(k), str) else None
            raise
        return api._json(request, out)

    @staticmethod
    def _describe(s: Session) -> dict:
        return {"signed_in": True, "authid": s.authid, "csrf": s.csrf, "expires": s.expires()}
