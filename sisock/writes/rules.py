"""Operator writes, sans I/O: declared points, checks, idempotency, outcomes.

This module decides whether a write may reach an instrument and what its
outcome was. It has no reactor and no WAMP; the only I/O it does is the
audit log (:mod:`sisock.writes.audit`) and the calls into the node's *write side*.
:mod:`sisock.wamp.operator` is the WAMP shell around it.

The write side of the data-core contract
----------------------------------------
A data core (:mod:`sisock.core.contract`) that offers writes also has three blocking
methods, called from a worker thread:

``write_points() -> Mapping[str, PointSpec]``
    The writable points and their limits, from the node's configuration.
``read_point(name) -> value``
    The current value of a point (a writable point, or the point its
    read-back names), read from the device now. Raises
    :class:`DeviceUnavailable` when the device cannot be asked.
``write_point(name, value) -> None``
    Send ``value`` (already checked) to the device **once**: no retry, no
    queue. Raises :class:`DeviceUnavailable` when nothing was sent (device
    down) and :class:`WriteUncertain` when the request was sent but its
    answer is missing (the device may have applied it).

It may also set ``write_rate`` / ``write_burst`` (writes per second per
caller, and the burst allowed) and ``audit_path``. :func:`offers_writes`
tells whether a core has the write side.

Checks (all before anything reaches the device; a refusal never clips)
----------------------------------------------------------------------
1. The caller the router disclosed has role ``operator``
   (:class:`NotAuthorized` otherwise, also when no caller was disclosed).
2. ``request_id`` seen before: the stored outcome is returned (a refusal is
   raised again) and nothing is written; the same id with other arguments
   is a :class:`WriteBadArgument`.
3. Arguments are well-formed (:class:`WriteBadArgument`); the point is
   declared (:class:`UnknownPoint`).
4. The caller's rate (:class:`RateLimited`), ``not_after``
   (:class:`Expired`).
5. The value: type (NaN, inf, a bool given as a number, a number given as a
   bool, strings: :class:`WriteBadArgument`), ``allowed``, ``min``/``max``
   and the register range (:class:`OutOfLimits`; a value that needs
   rounding to fit the register is a :class:`WriteBadArgument`); then the
   point's ``min_interval`` (:class:`RateLimited`).
6. The current value is read (:class:`DeviceUnavailable`); ``expected``
   must match it (:class:`Conflict`); the step from it must be at most
   ``max_step`` (:class:`OutOfLimits`).
7. A dry run stops here: ``dry_run_ok`` with the current value.
8. The intent is committed to the audit log, the write is sent once, the
   read-back point is read after ``settle`` seconds and compared with
   ``tolerance``: ``applied``, or ``unverified`` (read-back off or
   missing, or the device's answer lost). The outcome is committed before
   the reply.

Writes of one node are serialised (one at a time), so a compare-and-set and
its write are not interleaved with another write.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from .audit import INTENT, UNKNOWN, AuditLog
from sisock.core.contract import offers_writes
from sisock.core.errors import BadArgument, SisockError
from sisock.core.protocol import check_interval

__all__ = [
    "PointSpec",
    "Readback",
    "WriteSide",
    "WriteCore",
    "WriteRefused",
    "NotAuthorized",
    "UnknownPoint",
    "OutOfLimits",
    "Conflict",
    "Expired",
    "RateLimited",
    "DeviceUnavailable",
    "WriteBadArgument",
    "WriteUncertain",
    "REFUSALS",
    "STATUSES",
    "OPERATOR_ROLE",
    "offers_writes",
    "parse_set",
    "check_value",
    "TokenBucket",
]

#: The role whose callers may write (README, "Security model").
OPERATOR_ROLE = "operator"
#: Outcome statuses of a write that passed every check.
STATUSES = ("applied", "unverified", "dry_run_ok")
#: Most characters of a ``request_id`` and of a ``reason``.
MAX_REQUEST_ID = 128
MAX_REASON = 2000
#: Default rate limit: writes per second per caller, and the burst allowed.
DEFAULT_RATE = 10.0
DEFAULT_BURST = 20


# -- refusals -----------------------------------------------------------------


class WriteRefused(SisockError):
    """A write refused before reaching the device (or the device being down).

    Travels as ``{base}.error.<kind>`` with kwargs ``request_id`` and ``point``.

    Parameters
    ----------
    message : str
        What was wrong, naming the argument and the limit.
    request_id, point : str, optional
        The request and point concerned.
    """

    kind = "internal"

    def __init__(self, message: str, request_id: str | None = None, point: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.point = point

    def kwargs(self) -> dict[str, Any]:
        """The WAMP error's keyword arguments."""
        return {"request_id": self.request_id, "point": self.point}


class NotAuthorized(WriteRefused):
    """The caller is not a disclosed operator."""

    kind = "not_authorized"


class UnknownPoint(WriteRefused):
    """The point is not declared writable."""

    kind = "unknown_point"


class OutOfLimits(WriteRefused):
    """The value is outside ``min``/``max``, not in ``allowed``, overflows its register,
    or steps further than ``max_step``."""

    kind = "out_of_limits"


class Conflict(WriteRefused):
    """``expected`` does not match the current value (compare-and-set)."""

    kind = "conflict"


class Expired(WriteRefused):
    """``not_after`` has passed."""

    kind = "expired"


class RateLimited(WriteRefused):
    """Too many writes from this caller, or sooner than the point's ``min_interval``."""

    kind = "rate_limited"


class DeviceUnavailable(WriteRefused):
    """The device cannot be reached now; nothing was sent and nothing is queued."""

    kind = "device_unavailable"


class WriteBadArgument(WriteRefused, BadArgument):
    """A malformed argument: wrong type, NaN, inf, a reused ``request_id``..."""

    kind = "bad_argument"


#: Refusal kind -> class.
REFUSALS: dict[str, type[WriteRefused]] = {
    c.kind: c
    for c in (
        NotAuthorized,
        UnknownPoint,
        OutOfLimits,
        Conflict,
        Expired,
        RateLimited,
        DeviceUnavailable,
        WriteBadArgument,
    )
}


class WriteUncertain(Exception):
    """Raised by a write side: the request was sent but its answer is missing."""


# -- declarations --------------------------------------------------------------


@dataclass(frozen=True)
class Readback:
    """How a write is verified.

    Attributes
    ----------
    point : str
        The point read back (the written point itself, or e.g. a status).
    tolerance : float
        Largest accepted ``|readback - requested|`` (0: exact).
    settle : float
        Seconds to wait after the write before reading back.
    """

    point: str
    tolerance: float = 0.0
    settle: float = 0.0


@dataclass(frozen=True)
class PointSpec:
    """One writable point and its limits (from the node's configuration).

    Attributes
    ----------
    name : str
        Point name.
    type : str
        ``"number"``, ``"integer"`` (a whole number) or ``"bool"``.
    units, description : str or None
        For people.
    min, max : float or None
        Inclusive limits of the value (engineering units).
    allowed : tuple or None
        The only values accepted, when given.
    max_step : float or None
        Largest ``|value - current|``.
    min_interval : float or None
        Seconds between two writes of this point, at least.
    readback : Readback or None
        How the write is verified (None: ``unverified`` by design).
    scale, offset : float
        ``value = scale * raw + offset``: the raw value sent is
        ``(value - offset) / scale``.
    raw_min, raw_max : float or None
        The range the raw value must fit in (the register's).
    raw_integer : bool
        The raw value is an integer (it must not need rounding).
    """

    name: str
    type: str = "number"
    units: str | None = None
    description: str | None = None
    min: float | None = None
    max: float | None = None
    allowed: tuple | None = None
    max_step: float | None = None
    min_interval: float | None = None
    readback: Readback | None = None
    scale: float = 1.0
    offset: float = 0.0
    raw_min: float | None = None
    raw_max: float | None = None
    raw_integer: bool = False

    def describe(self) -> dict[str, Any]:
        """The ``points`` entry of this point (docs/operating.md)."""
        rb = None
        if self.readback is not None:
            rb = {"point": self.readback.point, "tolerance": self.readback.tolerance, "settle": self.readback.settle}
        return {
            "type": self.type,
            "units": self.units,
            "description": self.description,
            "min": self.min,
            "max": self.max,
            "allowed": list(self.allowed) if self.allowed is not None else None,
            "max_step": self.max_step,
            "min_interval": self.min_interval,
            "readback": rb,
        }

    def raw(self, value: float) -> float:
        """The raw value sent for ``value`` (scale and offset applied in reverse)."""
        return (value - self.offset) / self.scale


@runtime_checkable
class WriteSide(Protocol):
    """The optional write side of a data core (see the module docstring)."""

    def write_points(self) -> Mapping[str, PointSpec]:
        """Writable points by name."""

    def read_point(self, name: str) -> Any:
        """Current value of a point, read from the device now."""

    def write_point(self, name: str, value: Any) -> None:
        """Send one write (once)."""


# -- checks ------------------------------------------------------------------------


def check_value(spec: PointSpec, value: Any, request_id: str | None = None) -> Any:
    """Check ``value`` against the point's type and static limits (no clipping).

    Returns
    -------
    bool, int or float
        The value, normalised (an integral float for an ``integer`` point
        becomes an int).

    Raises
    ------
    WriteBadArgument
        Wrong type, NaN, inf, a bool for a number (or the reverse), a value
        that needs rounding to fit the register.
    OutOfLimits
        Outside ``min``/``max``, not in ``allowed``, overflowing the register.
    """
    p = spec.name

    def bad(msg: str) -> WriteBadArgument:
        return WriteBadArgument(f"point {p!r}: {msg}", request_id, p)

    if spec.type == "bool":
        if not isinstance(value, bool):
            raise bad(f"value must be true or false, got {type(value).__name__} {value!r:.40}")
    else:
        if isinstance(value, bool):
            raise bad(f"value must be a number, got the bool {value!r} (a bool is not taken as 0 or 1)")
        if not isinstance(value, (int, float)):
            raise bad(f"value must be a number, got {type(value).__name__} {value!r:.40}")
        if isinstance(value, float) and not math.isfinite(value):
            raise bad(f"value must be finite, got {value!r}")
        if spec.type == "integer":
            if isinstance(value, float):
                if not value.is_integer():
                    raise bad(f"value must be a whole number, got {value!r} (not rounded)")
                value = int(value)
    if spec.allowed is not None and not any(_same(value, a) for a in spec.allowed):
        raise OutOfLimits(
            f"point {p!r}: value {value!r} is not one of the allowed values "
            f"{list(spec.allowed)!r} (not changed to the nearest)",
            request_id,
            p,
        )
    if spec.type != "bool":
        if spec.min is not None and value < spec.min:
            raise OutOfLimits(
                f"point {p!r}: value {value!r} is below min={spec.min!r} (refused, not clipped)", request_id, p
            )
        if spec.max is not None and value > spec.max:
            raise OutOfLimits(
                f"point {p!r}: value {value!r} is above max={spec.max!r} (refused, not clipped)", request_id, p
            )
        raw = spec.raw(float(value))
        if spec.raw_integer:
            whole = round(raw)
            if abs(raw - whole) > 1e-6 * max(1.0, abs(raw)):
                step = abs(spec.scale)
                raise bad(
                    f"value {value!r} is not a whole number of steps of {step:g} {spec.units or ''}".rstrip()
                    + " from the offset (the register "
                    "holds integers; not rounded)"
                )
            raw = whole
        if (spec.raw_min is not None and raw < spec.raw_min) or (spec.raw_max is not None and raw > spec.raw_max):
            raise OutOfLimits(
                f"point {p!r}: value {value!r} overflows its register "
                f"(raw {raw:g} outside {spec.raw_min:g}..{spec.raw_max:g})",
                request_id,
                p,
            )
    return value


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps bools apart from numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _matches(spec: PointSpec, a: Any, b: Any, tolerance: float) -> bool:
    """Whether ``a`` and ``b`` agree within ``tolerance`` (exact for bools)."""
    if a is None or b is None:
        return False
    if isinstance(a, bool) or isinstance(b, bool) or spec.type == "bool":
        return bool(a) == bool(b) and isinstance(a, (bool, int)) and isinstance(b, (bool, int))
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return False
    if not (math.isfinite(fa) and math.isfinite(fb)):
        return False
    return abs(fa - fb) <= tolerance + 1e-9 * max(1.0, abs(fb))


@dataclass
class SetCall:
    """A checked ``set`` call (see :func:`parse_set`)."""

    point: str
    value: Any
    request_id: str
    dry_run: bool = False
    expected: Any = None
    not_after: float | None = None
    reason: str = ""


_SET_ARGS = ("point", "value", "request_id", "dry_run", "expected", "not_after", "reason")


def parse_set(args: tuple, kwargs: Mapping[str, Any]) -> SetCall:
    """Check the arguments of ``set(point, value, request_id, dry_run=False,
    expected=None, not_after=None, reason="")``.

    Raises
    ------
    WriteBadArgument
        Naming the argument (with the ``request_id`` and ``point`` when known).
    """
    if len(args) > len(_SET_ARGS):
        raise WriteBadArgument(f"set takes at most {len(_SET_ARGS)} arguments, got {len(args)}")
    given = dict(zip(_SET_ARGS, args))
    for k, v in kwargs.items():
        if k not in _SET_ARGS:
            raise WriteBadArgument(f"set: unknown argument {k!r}; expected {', '.join(_SET_ARGS)}")
        if k in given:
            raise WriteBadArgument(f"set: argument {k!r} given twice")
        given[k] = v
    rid = given.get("request_id")
    point = given.get("point")
    rid_ok = isinstance(rid, str) and 0 < len(rid) <= MAX_REQUEST_ID and rid.isprintable()
    point_ok = isinstance(point, str) and 0 < len(point) <= 200

    def bad(msg: str) -> WriteBadArgument:
        return WriteBadArgument(msg, rid if rid_ok else None, point if point_ok else None)

    for k in ("point", "value", "request_id"):
        if k not in given:
            raise bad(f"set: argument {k!r} is required")
    if not rid_ok:
        raise bad(
            f"set: request_id must be a string of 1..{MAX_REQUEST_ID} printable characters (a UUID), got {rid!r:.60}"
        )
    if not point_ok:
        raise bad(f"set: point must be a point name, got {point!r:.60}")
    dry_run = given.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise bad(f"set: dry_run must be true or false, got {dry_run!r:.40}")
    not_after = given.get("not_after")
    if not_after is not None:
        if (
            isinstance(not_after, bool)
            or not isinstance(not_after, (int, float))
            or not math.isfinite(not_after)
            or not_after <= 0
        ):
            raise bad(f"set: not_after must be a UNIX time in seconds, got {not_after!r:.40}")
        not_after = float(not_after)
    reason = given.get("reason", "")
    if reason is None:
        reason = ""
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise bad(f"set: reason must be a string of at most {MAX_REASON} characters")
    return SetCall(str(point), given["value"], str(rid), dry_run, given.get("expected"), not_after, reason)


class TokenBucket:
    """Rate limit: ``rate`` events per second on average, ``burst`` at once.

    Parameters
    ----------
    rate : float
        Tokens added per second.
    burst : int
        Bucket size.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._tokens: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float) -> float:
        """Take one token for ``key``; return 0, or the seconds to wait when empty."""
        tokens, last = self._tokens.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        if tokens < 1.0:
            self._tokens[key] = (tokens, now)
            return (1.0 - tokens) / self.rate if self.rate > 0 else math.inf
        self._tokens[key] = (tokens - 1.0, now)
        return 0.0


# -- the core ----------------------------------------------------------------------


@dataclass
class WriteCore:
    """Checks, writes and audits the operator writes of one node.

    Parameters
    ----------
    side : WriteSide
        The core's write side.
    audit : AuditLog
        The node's audit log.
    node : str
        The node name (for messages).
    clock : callable
        UNIX time now (tests inject a fake).
    sleep : callable
        Waits for the read-back settle time.
    rate, burst : float, int, optional
        Writes per second per caller (default the side's ``write_rate`` or
        :data:`DEFAULT_RATE`) and the burst allowed.
    busy_wait : float
        Seconds a write waits for the node's previous write to finish
        before it is refused as ``rate_limited`` (writes are serialised;
        this bounds how long a worker thread waits).
    """

    side: Any
    audit: AuditLog
    node: str = "node"
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    rate: float | None = None
    burst: int | None = None
    busy_wait: float = 10.0
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        rate = self.rate if self.rate is not None else getattr(self.side, "write_rate", DEFAULT_RATE)
        burst = self.burst if self.burst is not None else getattr(self.side, "write_burst", DEFAULT_BURST)
        self.bucket = TokenBucket(rate, burst)
        self.specs: dict[str, PointSpec] = dict(self.side.write_points())
        self.last_write: dict[str, float] = self.audit.last_writes()

    # -- RPC bodies --------------------------------------------------------
    def points(self, caller_authid: str | None = None, caller_role: str | None = None) -> dict[str, dict]:
        """``points() -> {point: {type, units, description, min, max, allowed,
        max_step, min_interval, readback}}``; only for an operator."""
        self._authorize(caller_authid, caller_role, None, None)
        return {name: spec.describe() for name, spec in self.specs.items()}

    def audit_records(
        self,
        start: Any,
        end: Any,
        point: str | None = None,
        caller: str | None = None,
        caller_authid: str | None = None,
        caller_role: str | None = None,
    ) -> list[dict]:
        """``audit(start, end, point=None, caller=None) -> [record, ...]`` (operators only)."""
        self._authorize(caller_authid, caller_role, None, None)
        try:
            s, e = check_interval(start, end, self.clock())
        except BadArgument as exc:
            raise WriteBadArgument(f"audit: {exc}") from None
        for name, v in (("point", point), ("caller", caller)):
            if v is not None and not isinstance(v, str):
                raise WriteBadArgument(f"audit: {name} must be a string or None, got {v!r:.40}")
        return self.audit.query(s, e, point, caller)

    def set(self, call: SetCall, caller_authid: str | None, caller_role: str | None) -> dict:
        """Run one ``set`` call: check, audit, write, read back (see the module docstring).

        Returns
        -------
        dict
            ``{request_id, status, point, old, requested, readback,
            t_received, t_done, message}``.

        Raises
        ------
        WriteRefused
            One subclass per refusal, audited before it is raised.
        """
        t_received = self.clock()
        if not self._lock.acquire(timeout=self.busy_wait):
            exc = RateLimited(
                f"another write to node {self.node!r} has been in progress for "
                f"{self.busy_wait:g} s (a long read-back settle?); nothing "
                "written, try again",
                call.request_id,
                call.point,
            )
            raise self._refuse(exc, call, caller_authid, caller_role, t_received)
        try:
            return self._set(call, caller_authid, caller_role, t_received)
        finally:
            self._lock.release()

    # -- internals ------------------------------------------------------------
    def _authorize(self, authid: str | None, role: str | None, rid: str | None, point: str | None) -> None:
        if not authid or not role:
            raise NotAuthorized(
                f"node {self.node!r} refuses writes whose caller the router "
                "did not disclose (router configuration: disclose caller "
                "for the operator role)",
                rid,
                point,
            )
        if role != OPERATOR_ROLE:
            raise NotAuthorized(
                f"{authid!r} has role {role!r}; only role {OPERATOR_ROLE!r} may change node {self.node!r}", rid, point
            )

    def _refuse(
        self, exc: WriteRefused, call: SetCall, authid: str | None, role: str | None, t: float, old: Any = None
    ) -> WriteRefused:
        """Audit a refusal (committed) and return it to raise."""
        exc.request_id = exc.request_id or call.request_id
        exc.point = exc.point or call.point
        self.audit.record(
            request_id=call.request_id,
            t=t,
            caller_authid=authid,
            caller_role=role,
            point=call.point,
            old=old,
            requested=_jsonable(call.value),
            status=exc.kind,
            reason=call.reason,
            dry_run=call.dry_run,
            message=str(exc),
            t_done=self.clock(),
        )
        return exc

    def _replay(self, row: dict, call: SetCall, authid: str | None = None) -> dict:
        if row.get("caller_authid") != authid:  # an id is its maker's: no one else replays it
            raise WriteBadArgument(
                f"request_id {call.request_id!r} belongs to another caller's request; make a new one",
                call.request_id,
                call.point,
            )
        same = (
            row["point"] == call.point
            and row["dry_run"] == call.dry_run
            and _same(row["requested"], _jsonable(call.value))
        )
        if not same:
            raise WriteBadArgument(
                f"request_id {call.request_id!r} was already used for another request "
                f"(point {row['point']!r}, value {row['requested']!r}); make a new one",
                call.request_id,
                call.point,
            )
        self.audit.count_replay(row["id"])
        status = row["status"]
        if status in REFUSALS:
            raise REFUSALS[status](row["message"] + " (replayed request: stored outcome)", call.request_id, call.point)
        return {
            "request_id": call.request_id,
            "status": status,
            "point": row["point"],
            "old": row["old"],
            "requested": row["requested"],
            "readback": row["readback"],
            "t_received": row["t"],
            "t_done": row["t_done"],
            "message": (row["message"] + " " if row["message"] else "")
            + "(replayed request: stored outcome, nothing written)",
        }

    def _set(self, call: SetCall, authid: str | None, role: str | None, t: float) -> dict:
        """Checks 1-8 of the module docstring, in order (the lock is held)."""
        rid, p = call.request_id, call.point
        try:
            self._authorize(authid, role, rid, p)
        except WriteRefused as exc:
            raise self._refuse(exc, call, authid, role, t) from None
        row = self.audit.find(rid)
        if row is not None:
            try:
                return self._replay(row, call, authid)
            except WriteBadArgument as exc:
                raise self._refuse(exc, call, authid, role, t) from None
        try:
            spec, value = self._check_request(call, authid, t)
        except WriteRefused as exc:
            raise self._refuse(exc, call, authid, role, t) from None
        old = None
        try:
            old = _jsonable(self.side.read_point(p))
            self._check_current(spec, call, value, old)
        except WriteRefused as exc:
            raise self._refuse(exc, call, authid, role, t, old) from None
        if call.dry_run:
            message = "every check passed; nothing written"
            t_done = self.clock()
            self.audit.record(
                request_id=rid,
                t=t,
                caller_authid=authid,
                caller_role=role,
                point=p,
                old=old,
                requested=value,
                status="dry_run_ok",
                reason=call.reason,
                dry_run=True,
                readback=old,
                message=message,
                t_done=t_done,
            )
            return {
                "request_id": rid,
                "status": "dry_run_ok",
                "point": p,
                "old": old,
                "requested": value,
                "readback": old,
                "t_received": t,
                "t_done": t_done,
                "message": message,
            }
        return self._write(call, spec, value, old, authid, role, t)

    def _check_request(self, call: SetCall, authid: str | None, t: float) -> tuple[PointSpec, Any]:
        """Point, rate, expiry, value and ``min_interval``: everything but the device."""
        rid, p = call.request_id, call.point
        spec = self.specs.get(p)
        if spec is None:
            known = ", ".join(sorted(self.specs)) or "none"
            raise UnknownPoint(f"node {self.node!r} has no writable point {p!r} (writable: {known})", rid, p)
        wait = self.bucket.take(authid or "", t)
        if wait > 0:
            raise RateLimited(
                f"too many writes from {authid!r} to node {self.node!r} "
                f"(at most {self.bucket.rate:g}/s, burst "
                f"{self.bucket.burst:g}); retry in {wait:.2f} s",
                rid,
                p,
            )
        if call.not_after is not None and t > call.not_after:
            raise Expired(f"not_after {call.not_after:.3f} has passed (received at {t:.3f}); nothing written", rid, p)
        value = check_value(spec, call.value, rid)
        if spec.min_interval and not call.dry_run and p in self.last_write:
            since = t - self.last_write[p]
            if since < spec.min_interval:
                raise RateLimited(
                    f"point {p!r} was written {since:.2f} s ago; min_interval is {spec.min_interval:g} s", rid, p
                )
        return spec, value

    def _check_current(self, spec: PointSpec, call: SetCall, value: Any, old: Any) -> None:
        """``expected`` (compare-and-set) and ``max_step`` against the value read now."""
        rid, p = call.request_id, call.point
        tolerance = spec.readback.tolerance if spec.readback else 0.0
        if call.expected is not None and not _matches(spec, old, call.expected, tolerance):
            raise Conflict(f"point {p!r} is {old!r}, not the expected {call.expected!r}; nothing written", rid, p)
        if spec.max_step is not None and spec.type != "bool":
            if old is None or not isinstance(old, (int, float)) or not math.isfinite(old):
                raise DeviceUnavailable(
                    f"point {p!r}: current value unknown ({old!r}), so max_step cannot be checked", rid, p
                )
            if abs(value - old) > spec.max_step:
                raise OutOfLimits(
                    f"point {p!r}: step from {old!r} to {value!r} is "
                    f"{abs(value - old):g}, more than max_step="
                    f"{spec.max_step:g} (refused, not clipped)",
                    rid,
                    p,
                )

    def _write(
        self, call: SetCall, spec: PointSpec, value: Any, old: Any, authid: str | None, role: str | None, t: float
    ) -> dict:
        """Commit the intent, send once, then read back (:meth:`_finish`)."""
        rid, p = call.request_id, call.point
        row_id = self.audit.record(
            request_id=rid,
            t=t,
            caller_authid=authid,
            caller_role=role,
            point=p,
            old=old,
            requested=value,
            status=INTENT,
            reason=call.reason,
        )
        try:
            self.side.write_point(p, value)
        except DeviceUnavailable as exc:  # nothing was sent
            exc.request_id, exc.point = rid, p
            self.audit.finish(row_id, exc.kind, message=str(exc), t_done=self.clock())
            raise
        except WriteUncertain as exc:
            return self._finish(row_id, call, spec, value, old, t, uncertain=str(exc))
        except Exception as exc:  # a bug or an unexpected device error: outcome unknown
            self.audit.finish(
                row_id, UNKNOWN, message=f"write failed: {type(exc).__name__}: {exc}", t_done=self.clock()
            )
            raise
        self.last_write[p] = t
        return self._finish(row_id, call, spec, value, old, t)

    def _finish(
        self, row_id: int, call: SetCall, spec: PointSpec, value: Any, old: Any, t: float, uncertain: str | None = None
    ) -> dict:
        """Read back, decide ``applied`` / ``unverified``, commit, build the reply."""
        p = call.point
        if uncertain is not None:
            self.last_write[p] = t
        readback = None
        if spec.readback is None:
            status, message = "unverified", "written; this point has no read-back"
        else:
            if spec.readback.settle > 0:
                self.sleep(spec.readback.settle)
            error: str | None = None
            try:
                readback = _jsonable(self.side.read_point(spec.readback.point))
            except WriteRefused as exc:
                readback, error = None, str(exc)
            if uncertain is not None:
                status = "unverified"
                message = f"the device's answer to the write was lost ({uncertain})"
            elif error is not None:
                status, message = "unverified", f"written; read-back failed: {error}"
            elif _matches(spec, readback, value, spec.readback.tolerance):
                status, message = "applied", "written and read back"
            else:
                status = "unverified"
                message = (
                    f"written, but {spec.readback.point!r} reads {readback!r} after "
                    f"{spec.readback.settle:g} s, not {value!r} within "
                    f"{spec.readback.tolerance:g}"
                )
        if uncertain is not None and spec.readback is None:
            message = f"the device's answer to the write was lost ({uncertain})"
        t_done = self.clock()
        self.audit.finish(row_id, status, readback=readback, message=message, t_done=t_done)
        return {
            "request_id": call.request_id,
            "status": status,
            "point": p,
            "old": old,
            "requested": value,
            "readback": readback,
            "t_received": t,
            "t_done": t_done,
            "message": message,
        }


def _jsonable(value: Any) -> Any:
    """``value`` as a plain JSON value (numpy scalars become Python ones)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return value
