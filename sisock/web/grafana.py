"""Grafana SimpleJSON, a drop-in for sisock 0.x's bridge (pure, no reactor).

Targets are ``node::field``. Differences from 0.x, on purpose:

* ``min_stride`` is the coarser of ``intervalMs`` and
  ``range / maxDataPoints`` (0.x read only ``interval`` and knew only
  ``ms s m h d``; every Grafana unit ``ms s m h d w y`` is accepted here);
* an unknown node gives an empty series whose ``meta.error`` says why,
  not a 500 for the whole panel;
* ``/annotations`` turns the changes of a string or bool field into
  annotations (query ``node::field``); on a writable node's
  ``operator_writes`` fields (``node::write_point``...) each write is one
  annotation saying who set what (:func:`write_annotations`);
* one body holds at most :data:`MAX_TARGETS` targets on at most
  :data:`MAX_GROUPS` ``(node, method)`` pairs (each pair is one call to a
  data node); more is a 400.

Answers are encoded by :func:`timeserie_json` and :func:`table_json` in
slices of :data:`SLICE` points, so that a big answer encoded in a thread
lets the reactor thread run between slices.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .errors import bad
from sisock.core.protocol import METHODS, MIN_STRIDE_RANGE
from .params import parse_duration, parse_node, parse_time

SEPARATOR = "::"
#: Most targets in one ``/query`` body (a Grafana panel sends a few).
MAX_TARGETS = 100
#: Most ``(node, method)`` pairs in one ``/query`` body: each is one node call.
MAX_GROUPS = 16
#: Points encoded per :func:`json.dumps` call in :func:`timeserie_json`.
SLICE = 1024
_COMPACT = {"separators": (",", ":"), "allow_nan": False}


@dataclass(frozen=True)
class Target:
    """One ``targets[]`` entry of a ``/query`` body."""

    ref_id: str
    target: str
    node: str
    field: str
    kind: str  # "timeserie" | "table"
    method: str | None = None


@dataclass
class GrafanaQuery:
    """A validated ``/query`` body."""

    start: float
    end: float
    min_stride: float | None
    targets: list[Target] = field(default_factory=list)
    #: target string -> message, for targets that could not be parsed
    invalid: dict[str, str] = field(default_factory=dict)

    def by_node(self) -> dict[tuple[str, str | None], list[str]]:
        """Fields to fetch per ``(node, method)``, in target order, no repeats."""
        out: dict[tuple[str, str | None], list[str]] = {}
        for t in self.targets:
            fields = out.setdefault((t.node, t.method), [])
            if t.field not in fields:
                fields.append(t.field)
        return out


def split_target(target: object) -> tuple[str, str]:
    """``"node::field"`` -> ``(node, field)``."""
    if not isinstance(target, str) or SEPARATOR not in target:
        raise bad(f"target must be 'node::field' (as /search lists them), got {target!r:.80}")
    node, fld = target.split(SEPARATOR, 1)
    parse_node(node)
    if not fld:
        raise bad(f"target {target!r} has no field after '::'")
    return node, fld


def parse_range(body: Mapping[str, Any], now: float | None = None) -> tuple[float, float]:
    """``range.from`` / ``range.to`` (ISO 8601 from Grafana; any form of :func:`parse_time`)."""
    rng = body.get("range")
    if not isinstance(rng, Mapping) or "from" not in rng or "to" not in rng:
        raise bad('body member \'range\' must be {"from": <time>, "to": <time>} (ISO 8601, as Grafana sends it)')
    start = parse_time("range.from", rng["from"], now)
    end = parse_time("range.to", rng["to"], now)
    if end < start:
        raise bad(f"'range.to' ({end:.3f}) is before 'range.from' ({start:.3f})")
    return start, end


def min_stride_of(body: Mapping[str, Any], span: float) -> float | None:
    """``min_stride`` for a panel: the coarser of its interval and ``span / maxDataPoints``.

    ``intervalMs`` wins over the ``interval`` string when both are given.
    Returns None when the body names neither (full resolution).
    """
    candidates = []
    interval_ms = body.get("intervalMs")
    if interval_ms is not None:
        if (
            isinstance(interval_ms, bool)
            or not isinstance(interval_ms, (int, float))
            or not math.isfinite(interval_ms)
            or interval_ms < 0
        ):
            raise bad(f"body member 'intervalMs' must be a number of milliseconds >= 0, got {interval_ms!r}")
        candidates.append(interval_ms / 1000.0)
    elif body.get("interval"):
        candidates.append(parse_duration("interval", body["interval"]))
    mdp = body.get("maxDataPoints")
    if mdp is not None:
        if isinstance(mdp, bool) or not isinstance(mdp, (int, float)) or mdp <= 0:
            raise bad(f"body member 'maxDataPoints' must be a positive number, got {mdp!r}")
        candidates.append(span / mdp)
    stride = max(candidates, default=0.0)
    if stride <= 0:
        return None
    return min(max(stride, MIN_STRIDE_RANGE[0]), MIN_STRIDE_RANGE[1])


def _target_method(t: Mapping[str, Any]) -> str | None:
    for key in ("data", "payload"):
        extra = t.get(key)
        if isinstance(extra, Mapping) and extra.get("method") is not None:
            m = str(extra["method"])
            if m not in METHODS:
                raise bad(f"target {key}.method must be one of {', '.join(METHODS)}, got {m!r}")
            return m
    return None


def parse_query(body: object, now: float | None = None) -> GrafanaQuery:
    """Validate a ``/query`` body as Grafana's SimpleJSON datasource sends it.

    Raises
    ------
    WebError
        400 for a malformed range or interval. A malformed target does
        not fail the request: it is listed in :attr:`GrafanaQuery.invalid`.
    """
    if not isinstance(body, Mapping):
        raise bad("the /query body must be a JSON object with 'range' and 'targets'")
    start, end = parse_range(body, now)
    stride = min_stride_of(body, end - start)
    targets = body.get("targets", [])
    if not isinstance(targets, list):
        raise bad('body member \'targets\' must be a list of {"target": "node::field"}')
    if len(targets) > MAX_TARGETS:
        raise bad(
            f"body member 'targets' holds {len(targets)} targets; the limit is "
            f"{MAX_TARGETS} per request (split the panel)"
        )
    q = GrafanaQuery(start, end, stride)
    for i, t in enumerate(targets):
        if not isinstance(t, Mapping):
            raise bad(f"targets[{i}] must be an object with a 'target' member")
        if t.get("hide") or t.get("target") in (None, ""):
            continue
        kind = t.get("type") or "timeserie"
        if kind not in ("timeserie", "table"):
            raise bad(f"targets[{i}].type must be 'timeserie' or 'table', got {kind!r}")
        try:
            node, fld = split_target(t["target"])
            method = _target_method(t)
        except Exception as exc:
            q.invalid[str(t["target"])] = str(exc)
            continue
        q.targets.append(Target(str(t.get("refId", "")), t["target"], node, fld, kind, method))
    groups = q.by_node()
    if len(groups) > MAX_GROUPS:
        raise bad(
            f"the targets name {len(groups)} (node, method) pairs; the limit is "
            f"{MAX_GROUPS} per request (each pair is one call to a data node)"
        )
    return q


def _value(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def datapoints(t: np.ndarray, values: np.ndarray) -> list[list]:
    """``[[value, ms], ...]``; NaN becomes ``null``; bools stay bools."""
    ms = (np.asarray(t, dtype=float) * 1000.0).tolist()
    return [[_value(v), m] for v, m in zip(np.asarray(values).tolist(), ms)]


def timeserie(target: str, t: np.ndarray, values: np.ndarray, error: str | None = None) -> dict:
    """One ``timeserie`` entry; ``meta.error`` says why it is empty, if it failed."""
    out: dict[str, Any] = {"target": target, "datapoints": datapoints(t, values)}
    if error:
        out["meta"] = {"error": error}
    return out


def table(target: str, t: np.ndarray, values: np.ndarray, kind: str, error: str | None = None) -> dict:
    """One ``table`` entry: columns ``time`` and the target."""
    col_type = {"number": "number", "bool": "number", "string": "string"}.get(kind, "number")
    out: dict[str, Any] = {
        "type": "table",
        "columns": [{"text": "time", "type": "time"}, {"text": target, "type": col_type}],
        "rows": [[m, v] for v, m in datapoints(t, values)],
    }
    if error:
        out["meta"] = {"error": error}
    return out


def _pairs_json(first: np.ndarray, second: np.ndarray) -> str:
    """``[a,b],[a,b],...`` (no outer brackets) for pairs of ``first`` and ``second``,
    encoded :data:`SLICE` pairs at a time; non-finite floats become ``null``."""
    parts = []
    for i in range(0, len(first), SLICE):
        a, b = first[i : i + SLICE], second[i : i + SLICE]
        if _finite_numbers(a) and _finite_numbers(b):  # the common case, at C speed
            pairs = np.column_stack((a.astype(float, copy=False), b.astype(float, copy=False))).tolist()
        else:
            pairs = [[_value(x), _value(y)] for x, y in zip(a.tolist(), b.tolist())]
        parts.append(json.dumps(pairs, **_COMPACT)[1:-1])
    return ",".join(parts)


def _finite_numbers(a: np.ndarray) -> bool:
    """True for a float array without NaN or infinity (ints and bools keep their type)."""
    return a.dtype.kind == "f" and bool(np.isfinite(a).all())


def _meta_json(error: str | None) -> str:
    return ',"meta":' + json.dumps({"error": error}, **_COMPACT) if error else ""


def timeserie_json(target: str, t: np.ndarray, values: np.ndarray, error: str | None = None) -> str:
    """:func:`timeserie` as compact JSON text, encoded in slices."""
    ms = np.asarray(t, dtype=float) * 1000.0
    return (
        '{"target":'
        + json.dumps(target, **_COMPACT)
        + ',"datapoints":['
        + _pairs_json(np.asarray(values), ms)
        + "]"
        + _meta_json(error)
        + "}"
    )


def table_json(target: str, t: np.ndarray, values: np.ndarray, kind: str, error: str | None = None) -> str:
    """:func:`table` as compact JSON text, encoded in slices."""
    head = table(target, np.zeros(0), np.zeros(0), kind)
    ms = np.asarray(t, dtype=float) * 1000.0
    return (
        '{"type":"table","columns":'
        + json.dumps(head["columns"], **_COMPACT)
        + ',"rows":['
        + _pairs_json(ms, np.asarray(values))
        + "]"
        + _meta_json(error)
        + "}"
    )


def search(targets: list[str], term: object) -> list[str]:
    """Targets containing the typed text (case-insensitive), sorted.

    ``term`` is the body's ``target`` (may be absent or empty: all).
    """
    text = "" if term is None else str(term).strip().lower()
    return sorted(t for t in targets if text in t.lower())


def parse_annotation(body: object, now: float | None = None) -> tuple[float, float, dict, str, str]:
    """``(start, end, annotation, node, field)`` of an ``/annotations`` body."""
    if not isinstance(body, Mapping) or not isinstance(body.get("annotation"), Mapping):
        raise bad("the /annotations body must hold 'range' and 'annotation' ({\"query\": \"node::field\"})")
    start, end = parse_range(body, now)
    ann = dict(body["annotation"])
    node, fld = split_target(ann.get("query"))
    return start, end, ann, node, fld


def annotations(annotation: Mapping[str, Any], node: str, fld: str, t: np.ndarray, values: np.ndarray) -> list[dict]:
    """One annotation per change of value (first sample included)."""
    out = []
    prev: Any = object()
    for ti, v in zip(np.asarray(t, dtype=float).tolist(), np.asarray(values).tolist()):
        v = _value(v)
        if v != prev:
            out.append(
                {
                    "annotation": dict(annotation),
                    "time": ti * 1000.0,
                    "title": f"{node}::{fld}",
                    "text": f"{fld} = {v}",
                    "tags": [node, fld],
                }
            )
            prev = v
    return out


#: The fields of a writable node's ``operator_writes`` timeline (sisock.wamp.operator).
WRITE_FIELDS = ("write_point", "write_value", "write_caller", "write_status")


def write_annotations(
    annotation: Mapping[str, Any], node: str, t: np.ndarray, data: Mapping[str, np.ndarray]
) -> list[dict]:
    """One annotation per operator write: who set which point to what, and the outcome.

    ``data`` holds the :data:`WRITE_FIELDS` arrays of the node's
    ``operator_writes`` timeline, ``t`` its times.
    """
    out = []
    cols = [np.asarray(data.get(f, np.zeros(0))).tolist() for f in WRITE_FIELDS]
    for i, ti in enumerate(np.asarray(t, dtype=float).tolist()):
        point, value, caller, status = (c[i] if i < len(c) else None for c in cols)
        out.append(
            {
                "annotation": dict(annotation),
                "time": ti * 1000.0,
                "title": f"{node}: {caller} set {point}",
                "text": f"{caller} set {point} = {_value(value)} ({status})",
                "tags": [node, "operator_write", str(point), str(caller)],
            }
        )
    return out
