"""Operator writes from the notebook client: ``points``, ``set`` and ``audit``.

Mixed into :class:`sisock.wamp.client.Client`; needs an operator account::

    >>> from sisock.client import connect, OutOfLimits
    >>> with connect(user="alice", secret=...) as c:          # doctest: +SKIP
    ...     c.points("modbus_sim")["setpoint"]["max"]
    ...     out = c.set("modbus_sim", "setpoint", 297.5, reason="warm-up")
    ...     out["status"], out["readback"]
    ...     c.audit("modbus_sim", -3600, 0)

:meth:`OperatorCalls.set` makes the ``request_id`` (a UUID), so a call the
client re-sends after a lost connection is the same request: the node
answers it from its audit log and the device receives one write.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

from . import errors as c

__all__ = ["OperatorCalls", "operator_uri"]


def operator_uri(base_uri: str, node: str, leaf: str) -> str:
    """``{base}.operator.<node>.<leaf>``."""
    return f"{base_uri}.operator.{node}.{leaf}"


class OperatorCalls:
    """The write calls of :class:`sisock.wamp.client.Client` (see the module docstring)."""

    #: Provided by the client this is mixed into: its URIs and its blocking call.
    uris: Any
    call: Callable[..., Any]

    def _operator_call(self, node: str, leaf: str, *args: Any, **kwargs: Any) -> Any:
        uri = operator_uri(self.uris.base, node, leaf)
        try:
            return self.call(uri, *args, **kwargs)
        except c.NodeUnknown:
            raise c.NodeUnknown(f"node {node!r} offers no operator writes (or is not running)") from None
        except c.RemoteError as exc:
            raise _typed(exc, node, kwargs.get("request_id"), args) from None

    def points(self, node: str) -> dict[str, dict]:
        """The writable points of ``node`` and their limits.

        Returns
        -------
        dict
            ``{point: {type, units, description, min, max, allowed, max_step,
            min_interval, readback}}``.
        """
        return self._operator_call(node, "points")

    def set(
        self,
        node: str,
        point: str,
        value: bool | int | float,
        dry_run: bool = False,
        reason: str = "",
        expected: Any = None,
        not_after: float | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> dict:
        """Change one point of ``node``; return the outcome.

        Parameters
        ----------
        node, point : str
            Where to write.
        value : bool, int or float
            The new value (engineering units). Never clipped: a value
            outside the point's limits is refused.
        dry_run : bool
            Make every check and read the current value; write nothing.
        reason : str
            Why, for the audit log.
        expected : optional
            Write only if the point's current value is this (compare-and-set).
        not_after : float, optional
            UNIX time after which the node must not apply the request.
        request_id : str, optional
            Made here (a UUID) when not given. The same id again returns the
            stored outcome and writes nothing.
        timeout : float, optional
            Seconds to wait for the outcome.

        Returns
        -------
        dict
            ``{request_id, status, point, old, requested, readback,
            t_received, t_done, message}``; ``status`` is ``applied``,
            ``unverified`` or ``dry_run_ok``.

        Raises
        ------
        NotAuthorized, UnknownPoint, OutOfLimits, Conflict, Expired, RateLimited,
        DeviceUnavailable, WriteBadArgument
            One per refusal (all :class:`~sisock.wamp.client.WriteRefused`).
        NodeUnknown, CallTimeout
        """
        rid = request_id or str(uuid.uuid4())
        kwargs: dict[str, Any] = {"dry_run": bool(dry_run), "reason": reason or ""}
        if expected is not None:
            kwargs["expected"] = expected
        if not_after is not None:
            kwargs["not_after"] = float(not_after)
        return self._set(node, point, value, rid, timeout, kwargs)

    def _set(self, node: str, point: str, value: Any, rid: str, timeout: float | None, kwargs: dict) -> dict:
        uri = operator_uri(self.uris.base, node, "set")
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
            raise c.WriteBadArgument(
                f"{self.uris.base}.error.bad_argument",
                f"value {value} cannot travel (integers are 64-bit); nothing was sent",
                {"request_id": rid, "point": point},
            )
        try:
            out = self.call(uri, point, value, rid, timeout=timeout, **kwargs)
        except c.NodeUnknown:
            raise c.NodeUnknown(f"node {node!r} offers no operator writes (or is not running)") from None
        except c.RemoteError as exc:
            raise _typed(exc, node, rid, (point,)) from None
        if not (isinstance(out, dict) and out.get("request_id") == rid and out.get("point") == point):
            # whoever answered did not handle this request: never report it as done
            raise c.ClientError(
                f"node {node!r} answered set({point!r}) with an outcome for another request "
                f"({out.get('request_id') if isinstance(out, dict) else out!r}); do not trust "
                "this node (is another session serving its name?)"
            )
        return out

    def audit(
        self, node: str, start: float = -86400, end: float = 0, point: str | None = None, caller: str | None = None
    ) -> list[dict]:
        """The audit records of ``node`` in ``[start, end)`` (≤ 0: seconds before now).

        Returns
        -------
        list of dict
            ``{request_id, t, caller_authid, caller_role, point, old, requested,
            readback, status, reason, dry_run, ...}``, oldest first.
        """
        return self._operator_call(node, "audit", start, end, point, caller)


def _typed(exc: Any, node: str, request_id: str | None, args: tuple) -> Exception:
    """The typed client error for a refusal (or ``exc`` itself)."""
    kwargs = dict(exc.details)
    if request_id is not None and not kwargs.get("request_id"):
        kwargs["request_id"] = request_id
    if exc.uri == "wamp.error.not_authorized":
        point = args[0] if args else None
        kwargs.setdefault("point", point)
        return c.NotAuthorized(
            exc.uri,
            f"the router refused: this account may not change node {node!r} (operator role needed): {exc.message}",
            kwargs,
        )
    kind = exc.uri.rsplit(".", 1)[-1] if ".error." in exc.uri else ""
    for cls in (
        c.NotAuthorized,
        c.UnknownPoint,
        c.OutOfLimits,
        c.Conflict,
        c.Expired,
        c.RateLimited,
        c.DeviceUnavailable,
        c.WriteBadArgument,
    ):
        if cls.kind == kind and not exc.uri.startswith("wamp."):
            return cls(exc.uri, exc.message, kwargs)
    return exc
