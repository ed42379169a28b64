"""The WAMP shell of operator writes: ``{base}.operator.<name>.points/set/audit``.

A data core that offers the write side of the contract
(:func:`sisock.core.contract.offers_writes`) gets, beside its read procedures:

``{base}.operator.<name>.points() -> {point: {...}}``
``{base}.operator.<name>.set(point, value, request_id, dry_run=False, expected=None,
not_after=None, reason="") -> {request_id, status, point, old, requested, readback,
t_received, t_done, message}``
``{base}.operator.<name>.audit(start, end, point=None, caller=None) -> [record, ...]``

Each is registered with ``RegisterOptions(details_arg="details")`` and
trusts only the caller the router discloses (``details.caller_authid`` /
``caller_authrole``; the router's ``operator`` role discloses it). The
checks, the audit log and the device calls run in a worker thread
(:class:`sisock.writes.rules.WriteCore`); a refusal leaves as
``{base}.error.<kind>`` with kwargs ``request_id`` and ``point``.

The writes sent to the device are also served as a timeline of the node,
``operator_writes`` (:class:`WritesTimeline`), with the fields
``write_point``, ``write_value``, ``write_caller`` and ``write_status``, so
a chart can overlay who changed what with the readings.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions
from twisted.internet import threads
from twisted.logger import Logger

from sisock.writes.audit import AuditLog
from sisock.core.contract import DataCore
from sisock.core.protocol import FieldSpec, Result, timeline_interval
from sisock.writes.rules import WriteBadArgument, WriteCore, WriteRefused, parse_set

log = Logger(namespace="sisock.wamp.operator")

__all__ = ["OperatorService", "WritesTimeline", "WRITES_TIMELINE", "WRITE_FIELDS", "operator_uri", "audit_path"]

#: Name of the timeline of writes served by a writable node.
WRITES_TIMELINE = "operator_writes"
#: Its fields and their metadata.
WRITE_FIELDS = {
    "write_point": FieldSpec("string", None, "Point an operator wrote"),
    "write_value": FieldSpec("number", None, "Value written (bools as 0/1)"),
    "write_caller": FieldSpec("string", None, "Who wrote it (router-disclosed authid)"),
    "write_status": FieldSpec("string", None, "applied, unverified or unknown"),
}

#: The procedures under ``{base}.operator.<name>.``.
OPERATOR_PROCEDURES = ("points", "set", "audit")


def operator_uri(base_uri: str, name: str, leaf: str) -> str:
    """``{base}.operator.<name>.<leaf>``."""
    return f"{base_uri}.operator.{name}.{leaf}"


def audit_path(home: Path, name: str) -> Path:
    """Default audit database of node ``name``: ``$SISOCK_HOME/audit/<name>.sqlite``."""
    return Path(home) / "audit" / f"{name}.sqlite"


class WritesTimeline:
    """A core plus the ``operator_writes`` timeline read from the audit log.

    Every other attribute is the wrapped core's.

    Parameters
    ----------
    core : DataCore
        The node's core (with its write side).
    audit : AuditLog
        The node's audit log.
    """

    def __init__(self, core: DataCore, audit: AuditLog) -> None:
        self._core = core
        self._audit = audit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    def get_fields(self, start: float, end: float) -> tuple[dict, dict]:
        """The core's fields, plus the writes' when there were writes in the range."""
        field, timeline = self._core.get_fields(start, end)
        rows = self._audit.writes(start, end)
        if rows:
            field, timeline = dict(field), dict(timeline)
            for name, spec in WRITE_FIELDS.items():
                field[name] = spec.describe(WRITES_TIMELINE)
            t = np.array([r["t"] for r in rows])
            timeline[WRITES_TIMELINE] = {"interval": timeline_interval(t), "field": list(WRITE_FIELDS)}
        return field, timeline

    def get_data(
        self,
        fields: list[str],
        start: float,
        end: float,
        min_stride: float | None = None,
        method: str = "mean",
        *,
        streaming: bool = False,
    ) -> Result:
        """The core's answer, plus the writes' fields that were asked for.

        With ``min_stride`` the last write of each epoch-aligned bin is kept.
        """
        ours = [f for f in fields if f in WRITE_FIELDS]
        theirs = [f for f in fields if f not in WRITE_FIELDS]
        result = Result.coerce(self._core.get_data(theirs, start, end, min_stride, method, streaming=streaming))
        if not ours:
            return result
        rows = self._audit.writes(start, end)
        if min_stride:
            last: dict[int, dict] = {}
            for r in rows:
                last[math.floor(r["t"] / min_stride)] = r
            rows = [last[k] for k in sorted(last)]
        if not rows:
            for f in ours:
                result.data[f] = WRITE_FIELDS[f].missing(0)
            return result
        t = np.array([r["t"] for r in rows], dtype=np.float64)
        values = {
            "write_point": np.array([r["point"] or "" for r in rows], dtype=np.str_),
            "write_value": np.array([_number(r["requested"]) for r in rows], dtype=np.float64),
            "write_caller": np.array([r["caller_authid"] or "" for r in rows], dtype=np.str_),
            "write_status": np.array([r["status"] for r in rows], dtype=np.str_),
        }
        result.add(WRITES_TIMELINE, t, {f: values[f] for f in ours}, float(t[-1]))
        return result


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return math.nan


def _caller(details: Any) -> tuple[str | None, str | None]:
    """The router-disclosed caller ``(authid, authrole)``; None where not disclosed."""
    if details is None:
        return None, None
    return getattr(details, "caller_authid", None), getattr(details, "caller_authrole", None)


class OperatorService:
    """Attach operator writes to a :class:`sisock.wamp.service.NodeService`.

    Opens the node's audit log, wraps the service's core in
    :class:`WritesTimeline` and registers the operator procedures on
    every join (:meth:`register`).

    Parameters
    ----------
    service : NodeService
        The node service; its core offers the write side.
    path : pathlib.Path, optional
        The audit database (default: the core's ``audit_path`` attribute,
        else :func:`audit_path` under ``SISOCK_HOME``).
    """

    def __init__(self, service: Any, path: Path | None = None) -> None:
        core = service.node
        self.name = core.name
        self.base_uri = service.settings.base_uri
        path = path or getattr(core, "audit_path", None) or audit_path(service.settings.home, self.name)
        self.audit = AuditLog(path)
        if self.audit.recovered:
            log.warn(
                "{n} write(s) of node {name!r} had no recorded outcome (the node "
                "stopped during the write): marked 'unknown' in {path}",
                n=self.audit.recovered,
                name=self.name,
                path=str(path),
            )
        self.core = WriteCore(core, self.audit, self.name)
        self.in_thread = getattr(service, "in_thread", threads.deferToThread)
        service.node = WritesTimeline(core, self.audit)

    def uri(self, leaf: str) -> str:
        """``{base}.operator.<name>.<leaf>``."""
        return operator_uri(self.base_uri, self.name, leaf)

    async def register(self, session: Any) -> bool:
        """Register ``points``, ``set`` and ``audit``; False if the router refused.

        A router whose authorizer predates operator writes refuses the
        registration: the node then serves reads only, and says so.
        """
        options = RegisterOptions(details_arg="details")
        try:
            for leaf, fn in (("points", self.points), ("set", self.set), ("audit", self.audit_call)):
                await session.register(fn, self.uri(leaf), options=options)
        except ApplicationError as exc:
            log.error(
                "node {name!r} cannot offer writes: the router refused to register {uri}: {e}",
                name=self.name,
                uri=self.uri("*"),
                e=exc.error,
            )
            return False
        log.info("node {name!r} accepts operator writes to {n} point(s)", name=self.name, n=len(self.core.specs))
        return True

    def _error(self, exc: Exception, rpc: str) -> ApplicationError:
        if isinstance(exc, WriteRefused):
            return ApplicationError(exc.uri(self.base_uri), str(exc), **exc.kwargs())
        log.failure("operator {rpc} failed", rpc=rpc)
        return ApplicationError(
            f"{self.base_uri}.error.internal", f"{rpc} failed on node {self.name!r}: {type(exc).__name__}: {exc}"
        )

    async def points(self, *args, details=None, **kwargs) -> dict:
        """``points() -> {point: {type, units, ...}}``."""
        authid, role = _caller(details)
        try:
            if args or kwargs:
                raise WriteBadArgument("points takes no arguments")
            return self.core.points(authid, role)
        except Exception as exc:
            raise self._error(exc, "points") from exc

    async def set(self, *args, details=None, **kwargs) -> dict:
        """``set(point, value, request_id, dry_run=False, expected=None, not_after=None,
        reason="")``."""
        authid, role = _caller(details)
        try:
            return await self.in_thread(self._set, args, kwargs, authid, role)
        except Exception as exc:
            raise self._error(exc, "set") from exc

    def _set(self, args: tuple, kwargs: dict, authid: str | None, role: str | None) -> dict:
        try:
            call = parse_set(args, kwargs)
        except WriteBadArgument as exc:  # audited too, with what could be read of it
            value = args[1] if len(args) > 1 else kwargs.get("value")
            self.audit.record(
                request_id=exc.request_id,
                t=self.core.clock(),
                caller_authid=authid,
                caller_role=role,
                point=exc.point,
                old=None,
                requested=value,
                status=exc.kind,
                reason=str(kwargs.get("reason") or "")[:200],
                dry_run=bool(kwargs.get("dry_run") is True),
                message=str(exc),
            )
            raise
        return self.core.set(call, authid, role)

    async def audit_call(
        self, start=-86400, end=0, point=None, caller=None, *args, details=None, **kwargs
    ) -> list[dict]:
        """``audit(start, end, point=None, caller=None) -> [record, ...]``."""
        authid, role = _caller(details)
        try:
            if args or kwargs:
                raise WriteBadArgument("audit takes (start, end, point=None, caller=None)")
            return await self.in_thread(self.core.audit_records, start, end, point, caller, authid, role)
        except Exception as exc:
            raise self._error(exc, "audit") from exc
