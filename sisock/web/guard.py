"""What the web bridge checks and adds on every request (pure, no reactor).

* :func:`host_allowed` -- the ``Host`` allowlist against DNS rebinding: a
  page from another site that makes its own name resolve to 127.0.0.1
  still sends its own name as ``Host``, so only loopback names, IP
  addresses (a page whose origin is an address is the bridge's own
  origin, not a rebinding) and the names the site configured are answered.
* :func:`head_error` -- the checks made on a request's head, before any of
  its body is read: ``Host``, token, declared length.
* :func:`redact` -- tokens out of every logged line.
* :func:`without_token` -- the relative URL a browser is sent to once the
  token from ``?token=`` is in a cookie.
* :func:`cookie_attributes` and :data:`SECURITY_HEADERS` -- what every
  answer carries.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping
from urllib.parse import parse_qsl, unquote_plus

from .errors import WebError

#: Host names every bridge answers to (with any port).
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

#: Largest request body accepted (Grafana bodies are a few kB).
MAX_BODY = 1 << 20

#: Headers on every answer. The dashboard loads only its own files (one
#: script, one style sheet, fetches and event streams to its own origin)
#: and styles elements through the DOM, which CSP does not restrict.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}

_TOKEN = re.compile(r"(?i)((?:^|[?&;\s\"'/])(?:token|sisock_token)(?:=|%3D))[^&;\s\"'#]*")


@dataclass(frozen=True)
class Policy:
    """The request policy of one bridge.

    Parameters
    ----------
    token : str, optional
        When set, every request must carry it.
    allowed_hosts : frozenset of str
        Host names answered besides :data:`LOCAL_HOSTS` (lower case, no
        port); ``"*"`` answers every name (the Host check is off).
    cors_origins : tuple of str
        Origins allowed by CORS (``"*"`` for any); empty: CORS off.
    trust_proxy : bool
        Believe ``X-Forwarded-Proto`` (set only behind a proxy that
        overwrites it).
    max_body : int
        Largest request body, in bytes.
    """

    token: str | None = None
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    cors_origins: tuple[str, ...] = ()
    trust_proxy: bool = False
    max_body: int = MAX_BODY


def host_names(names: Iterable[str]) -> frozenset[str]:
    """Normalise configured host names: lower case, no port, no brackets.

    Raises
    ------
    ValueError
        For an empty name or one with a path or a scheme.
    """
    out = set()
    for raw in names:
        name = str(raw).strip().lower()
        if name == "*":
            out.add(name)
            continue
        parsed = split_host(name)
        if parsed is None or "/" in name or not parsed:
            raise ValueError(
                f"--allowed-host must be a host name or address without scheme "
                f"or path (e.g. sisock.example.org), got {raw!r}"
            )
        out.add(parsed)
    return frozenset(out)


def split_host(value: str) -> str | None:
    """The name of a ``Host`` header value (lower case, no port, no brackets).

    Returns None when the value is malformed.
    """
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    elif value.count(":") > 1:  # a bare IPv6 address (not valid in Host, seen in configs)
        try:
            return str(ipaddress.IPv6Address(value))
        except ValueError:
            return None
    else:
        name, _, port = value.partition(":")
        rest = ":" + port if _ else ""
    if rest and not re.fullmatch(r":\d{0,5}", rest):
        return None
    name = name.rstrip(".")
    if not name or not re.fullmatch(r"[a-z0-9._:-]+", name):
        return None
    return name


def host_allowed(host: str | None, allowed: frozenset[str]) -> bool:
    """True if a request with this ``Host`` header may be answered."""
    if "*" in allowed:
        return True
    if not host:
        return False
    name = split_host(host)
    return name is not None and (name in LOCAL_HOSTS or name in allowed or _is_address(name))


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_error(host: str | None) -> WebError:
    """The 421 answer to a ``Host`` that is not on the allowlist."""
    shown = (host or "")[:80]
    return WebError(
        "host_not_allowed",
        f"this server does not answer to Host {shown!r}: only localhost, IP "
        f"addresses and the names given with 'sisock web --allowed-host NAME' "
        f"are accepted (protection against DNS rebinding)",
    )


def token_given(headers: Mapping[str, str], query: bytes | str, cookie: str | None, token: str) -> tuple[bool, bool]:
    """Check the caller's token.

    Parameters
    ----------
    headers : mapping
        Lower-case header names to values (``authorization`` is read).
    query : bytes or str
        The raw query string (``?token=`` is read).
    cookie : str, optional
        The ``sisock_token`` cookie.
    token : str
        The expected token.

    Returns
    -------
    ok : bool
        True if any of them matches (compared in constant time).
    in_query : bool
        True if the query string carries a ``token``.
    """
    given = []
    auth = headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        given.append(auth[7:].strip())
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    in_query = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "token"]
    given += in_query[-1:]
    if cookie:
        given.append(cookie)
    want = token.encode()
    ok = any(hmac.compare_digest(g.encode(errors="replace"), want) for g in given)
    return ok, bool(in_query)


def unauthorized() -> WebError:
    """The 401 answer."""
    return WebError(
        "unauthorized",
        "this server needs an access token: send 'Authorization: Bearer <token>' or open the page with ?token=<token>",
    )


def body_too_large(limit: int) -> WebError:
    """The 413 answer to a body over ``limit`` bytes."""
    return WebError("body_too_large", f"request body over the limit of {limit} bytes")


def head_error(
    policy: Policy, headers: Mapping[str, str], query: bytes | str, cookie: str | None, length: int | None
) -> WebError | None:
    """Why a request that carries a body must be refused before it is read, if it must.

    Parameters
    ----------
    policy : Policy
    headers : mapping
        Lower-case header names to values.
    query : bytes or str
        The raw query string of the request line.
    cookie : str, optional
        The ``sisock_token`` cookie.
    length : int, optional
        The declared ``Content-Length``; None for a chunked body.
    """
    if not host_allowed(headers.get("host"), policy.allowed_hosts):
        return host_error(headers.get("host"))
    if policy.token and not token_given(headers, query, cookie, policy.token)[0]:
        return unauthorized()
    if length is not None and length > policy.max_body:
        return body_too_large(policy.max_body)
    return None


def bad_path(path: str) -> WebError | None:
    """A 400 for a decoded path holding a NUL or another control character."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return WebError("bad_argument", "the path holds a control character (such as NUL)")
    return None


def redact(line: str) -> str:
    """``line`` with the value of every ``token=`` replaced by ``<redacted>``."""
    return _TOKEN.sub(r"\1<redacted>", line)


def without_token(path: str, query: str) -> str:
    """The relative URL of the same page without ``token`` in its query.

    Relative (the last path segment and the query), so that it resolves to
    the same page behind a reverse proxy that serves the bridge under a
    prefix.
    """
    kept = [p for p in query.split("&") if p and unquote_plus(p.split("=", 1)[0]) != "token"]
    last = path.rsplit("/", 1)[-1]
    if not last or ":" in last:  # "./x:y" is not read as a scheme
        last = "./" + last
    return last + ("?" + "&".join(kept) if kept else "")


def is_navigation(headers: Mapping[str, str]) -> bool:
    """True if a browser is loading a page (not a script's fetch)."""
    mode = (headers.get("sec-fetch-mode") or "").lower()
    if mode:
        return mode == "navigate"
    return "text/html" in (headers.get("accept") or "").lower()


def is_https(secure_transport: bool, headers: Mapping[str, str], trust_proxy: bool) -> bool:
    """True if the browser reached this bridge over HTTPS."""
    if secure_transport:
        return True
    if not trust_proxy:
        return False
    proto = (headers.get("x-forwarded-proto") or "").split(",")[0].strip().lower()
    return proto == "https"


def cookie_attributes(https: bool) -> dict:
    """Keyword arguments of ``Request.addCookie`` for the token cookie.

    No ``Path``: the browser then scopes the cookie to the directory of the
    page that carried the token, which is the proxy's prefix behind a
    reverse proxy and ``/`` otherwise.
    """
    return {"httpOnly": True, "sameSite": "strict", "secure": https or None}


def cors_headers(origin: str | None, origins: tuple[str, ...]) -> dict[str, str]:
    """CORS headers for a request from ``origin`` (empty when not allowed)."""
    if not origin or not origins:
        return {}
    if "*" in origins:
        out = {"access-control-allow-origin": "*"}
    elif origin in origins:
        out = {"access-control-allow-origin": origin, "vary": "Origin"}
    else:
        return {}
    out.update(
        {
            "access-control-allow-methods": "GET, POST, OPTIONS",
            "access-control-allow-headers": "Authorization, Content-Type",
            "access-control-max-age": "600",
        }
    )
    return out


def write_allowed(
    method: str, content_type: str | None, origin: str | None, host: str | None, origins: tuple[str, ...]
) -> str | None:
    """Why a request that changes state on the bridge (e.g. saving a view) is refused, or None.

    Cross-site request forgery: any page a user opens can send a "simple"
    cross-origin POST (``text/plain``, no preflight) with no token to steal.
    So a write must be JSON (a cross-origin JSON request needs a CORS
    preflight, which the bridge grants only to configured origins) and,
    when the browser names its origin, come from the bridge's own origin or
    a configured one.
    """
    if method not in ("POST", "DELETE"):  # (other methods get 405 from the route)
        return None
    if method != "DELETE" and (content_type or "").split(";")[0].strip().lower() != "application/json":
        return "a write must send Content-Type: application/json"
    if origin and origin != "null":
        own = {f"http://{host}", f"https://{host}"} if host else set()
        if origin not in own and "*" not in origins and origin not in origins:
            return f"a write from origin {origin!r} is refused (cross-site request)"
    elif origin == "null":
        return "a write from an opaque origin is refused (cross-site request)"
    return None
