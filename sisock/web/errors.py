"""The one error type of the web bridge: an HTTP status plus a JSON body.

Every failure a caller can cause or meet leaves as
``{"error": <sisock error name>, "message": <text>}`` with a status code
(README, "Web dashboard and Grafana"); never a stack trace.
"""

from __future__ import annotations

from typing import Any

#: sisock error name -> HTTP status.
STATUS = {
    "bad_argument": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "unknown_field": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "host_not_allowed": 421,
    "too_much_data": 413,
    "uri_too_long": 414,
    "body_too_large": 413,
    "too_many_requests": 429,
    "node_error": 502,
    "router_unavailable": 503,
    "timeout": 504,
    "internal": 500,
}


class WebError(Exception):
    """An error answered to an HTTP caller.

    Parameters
    ----------
    error : str
        sisock error name (a key of :data:`STATUS`), e.g. ``"bad_argument"``.
    message : str
        What failed, naming the argument and the limit.
    status : int, optional
        HTTP status; default from :data:`STATUS`.
    extra : dict, optional
        More JSON members (e.g. ``{"min_stride": 60.0}`` for too much data).
    """

    def __init__(self, error: str, message: str, status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.status = status or STATUS.get(error, 500)
        self.extra = extra

    def body(self) -> dict:
        """The JSON body: ``{"error", "message", ...extra}``."""
        return {"error": self.error, "message": self.message, **self.extra}


def bad(message: str) -> WebError:
    """A 400 ``bad_argument`` error."""
    return WebError("bad_argument", message)


def too_much_from_node(node: str, details: dict[str, Any]) -> WebError:
    """413 for a node's ``too_much_data`` refusal, with advice an HTTP caller can follow.

    The node's own message may suggest a streamed binary reply, which an
    HTTP request cannot ask for; this one names the ``min_stride`` that fits
    (from the refusal's details) and the limit.
    """
    fits = details.get("min_stride")
    limit = details.get("limit")
    over = f" of {limit} values" if limit else ""
    advice = (
        f"pass min_stride >= {fits:g} seconds, a shorter range or fewer fields"
        if fits
        else "pass a min_stride, a shorter range or fewer fields"
    )
    return WebError(
        "too_much_data",
        f"the answer would be over data node {node!r}'s limit{over}; {advice}",
        **{k: v for k, v in details.items() if k in ("min_stride", "limit")},
    )
