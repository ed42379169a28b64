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
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "host_not_allowed": 421,
    "too_much_data": 413,
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

    def __init__(self, error: str, message: str, status: int | None = None,
                 **extra: Any) -> None:
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
