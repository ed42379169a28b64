"""What a twisted.web request says, as plain values (shared by the bridge's resources)."""

from __future__ import annotations


def _args(request) -> dict[str, str]:
    """The query arguments, last value of each."""
    return {k.decode(errors="replace"): v[-1].decode(errors="replace") for k, v in request.args.items() if v}


def _headers(request) -> dict[str, str]:
    """The request's headers, lower-case names, last value of each (all of ``Host``)."""
    out = {
        k.decode("latin-1").lower(): v[-1].decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders() if v
    }
    host = _host(request)
    if host is not None:
        out["host"] = host
    return out


def _host(request) -> str | None:
    """The ``Host`` header; several are joined with commas, which no allowlist matches
    (a request naming two hosts is refused rather than judged by one of them)."""
    values = request.requestHeaders.getRawHeaders(b"host") or []
    return ",".join(v.decode("latin-1") for v in values) if values else None


def _client(request) -> tuple[str, int]:
    """Whose turn a node call waits for: the client's address and this request."""
    addr = request.getClientAddress()
    return str(getattr(addr, "host", "") or ""), id(request)
