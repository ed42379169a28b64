"""The notebook client's errors (:mod:`sisock.wamp.client` re-exports them).

Kept apart so the write calls (:mod:`sisock.consumer.writes`) and the client
share them without importing each other.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base class of the client's errors."""


class RouterUnreachable(ClientError):
    """No router answered at the URL."""


class AuthenticationFailed(ClientError):
    """The router refused the credentials."""


class NodeUnknown(ClientError, KeyError):
    """No data node of that name is registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RemoteError(ClientError):
    """The data node refused the request (bad argument, too much data...).

    Attributes
    ----------
    uri : str
        The WAMP error URI, e.g. ``org.simonsobservatory.error.bad_argument``.
    message : str
        The node's explanation.
    details : dict
        What the node said for programs (the error's keyword arguments).
    """

    def __init__(self, uri: str, message: str, details: dict | None = None) -> None:
        super().__init__(f"{message} [{uri}]")
        self.uri = uri
        self.message = message
        self.details = dict(details or {})


class TooMuchDataError(RemoteError):
    """The answer would be over the node's limit.

    Attributes
    ----------
    min_stride : float or None
        A ``min_stride`` (seconds) whose answer fits.
    limit : int or None
        The limit the answer went over (values, or bytes for a message limit).
    """

    @property
    def min_stride(self) -> float | None:
        """A ``min_stride`` whose answer fits (None if the node did not say)."""
        return self.details.get("min_stride")

    @property
    def limit(self) -> int | None:
        """The limit the answer went over."""
        return self.details.get("limit", self.details.get("max_message_bytes"))


class WriteRefused(RemoteError):
    """A node (or the router) refused an operator write; nothing was written.

    One subclass per refusal (docs/operating.md), raised by
    :meth:`Client.set`.

    Attributes
    ----------
    request_id, point : str or None
        The refused request and its point.
    """

    kind = ""

    @property
    def request_id(self) -> str | None:
        """The refused request's id."""
        return self.details.get("request_id")

    @property
    def point(self) -> str | None:
        """The refused request's point."""
        return self.details.get("point")


class NotAuthorized(WriteRefused):
    """Not an operator (refused by the router or the node)."""

    kind = "not_authorized"


class UnknownPoint(WriteRefused):
    """The point is not declared writable."""

    kind = "unknown_point"


class OutOfLimits(WriteRefused):
    """Outside min/max, not allowed, overflowing the register, or a step over max_step."""

    kind = "out_of_limits"


class Conflict(WriteRefused):
    """``expected`` did not match the current value."""

    kind = "conflict"


class Expired(WriteRefused):
    """``not_after`` had passed."""

    kind = "expired"


class RateLimited(WriteRefused):
    """Too many writes, or sooner than the point's ``min_interval``."""

    kind = "rate_limited"


class DeviceUnavailable(WriteRefused):
    """The device is down; nothing was sent or queued."""

    kind = "device_unavailable"


class WriteBadArgument(WriteRefused):
    """A malformed write (type, NaN, inf, a bool for a number...)."""

    kind = "bad_argument"


class CallTimeout(ClientError, TimeoutError):
    """No answer within the timeout."""
