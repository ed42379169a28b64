"""The sisock protocol, sans I/O: URIs, call checking, field specs, typed results.

This module owns the sisock 0.x contract and its extensions. It has no
reactor and no autobahn import, so every rule here is unit-tested without a
router; the WAMP shells (:mod:`sisock.wamp.service`, :mod:`sisock.wamp.client`,
:mod:`sisock.wamp.legacy`, the hub, the router's authorizer) only wire it to
sessions. See the README, section "Wire protocol", for the contract in
prose.

URIs
    :class:`Uris` builds every URI from the base URI (default
    ``org.simonsobservatory``): ``{base}.consumer.<name>.get_fields``,
    ``.get_data``, ``.live``, the hub's procedures and topics, errors.
Calls
    :func:`parse_get_fields` and :func:`parse_get_data` check what a caller
    sent (arity, keywords given twice, unknown extensions, types, limits)
    and return plain values or a :class:`GetData`; a problem raises
    :class:`~sisock.core.errors.BadArgument` naming the argument and the limit.
    Times (:func:`check_interval`) and ``min_stride``
    (:func:`check_min_stride`) have one validator each.
Results
    :class:`Result` is what a data core returns from ``get_data``, and the
    one shape of an answer until it is encoded: numpy arrays per field,
    times per timeline and which timeline each field is on, possibly still
    being read (a *progressive* result: :attr:`Result.pending`).
    :meth:`Result.to_wire` encodes it through the registry of
    :mod:`sisock.core.encoders`; :meth:`Result.from_wire` decodes a reply
    of any sisock version, and :meth:`Result.guess_field_timeline` is the
    one rule for a reply that does not say which timeline a field is on.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

from . import wire
from .errors import BadArgument

DEFAULT_BASE_URI = "org.simonsobservatory"

# -- names and URIs -----------------------------------------------------------

#: Data-node names: one URI component, so a name can never nest inside another.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")

#: Procedures every data node registers under ``{base}.consumer.<name>.``.
NODE_PROCEDURES = ("get_fields", "get_data")

#: The errors autobahn sends for a callee that raised a plain exception (such
#: as the ``TypeError`` of an unexpected keyword) or refused its arguments. A
#: sisock node sends only ``{base}.error.*``, so one of these in answer to the
#: ``encoding`` extension means a sisock 0.x node, which predates it.
OLD_NODE_ERRORS = ("wamp.error.runtime_error", "wamp.error.invalid_argument")


def valid_name(name: object) -> bool:
    """True if ``name`` is a legal data-node name (letters, digits, ``_``, ``-``)."""
    return isinstance(name, str) and bool(NAME_PATTERN.match(name))


def check_name(name: object) -> str:
    """Return ``name`` if it is a legal data-node name, else raise :class:`BadArgument`."""
    if not valid_name(name):
        raise BadArgument(
            f"data node name {name!r} is not allowed: use letters, digits, '_' or '-' (it becomes one URI component)"
        )
    return name  # type: ignore[return-value]


@dataclass(frozen=True)
class Uris:
    """Every URI of the protocol under one base URI.

    Parameters
    ----------
    base : str
        The base URI, ``org.simonsobservatory`` by default.
    """

    base: str = DEFAULT_BASE_URI

    def __call__(self, suffix: str) -> str:
        """``"{base}.{suffix}"`` (sisock 0.x ``uri()``)."""
        return f"{self.base}.{suffix}"

    def node(self, name: str, leaf: str) -> str:
        """``{base}.consumer.<name>.<leaf>`` (``get_fields``, ``get_data``, ``live``)."""
        return f"{self.base}.consumer.{name}.{leaf}"

    def get_fields(self, name: str) -> str:
        """The ``get_fields`` procedure of node ``name``."""
        return self.node(name, "get_fields")

    def get_data(self, name: str) -> str:
        """The ``get_data`` procedure of node ``name``."""
        return self.node(name, "get_data")

    def live(self, name: str) -> str:
        """The ``live`` topic of node ``name`` (new samples, ``get_data`` shape)."""
        return self.node(name, "live")

    def error(self, kind: str) -> str:
        """``{base}.error.<kind>``."""
        return f"{self.base}.error.{kind}"

    def is_error(self, uri: str) -> bool:
        """True for a sisock error URI (``{base}.error.*``)."""
        return uri.startswith(f"{self.base}.error.")

    def full(self, uri: str) -> str:
        """``uri`` unchanged when already absolute (base or ``wamp.``), else under the base."""
        if uri.startswith(self.base + ".") or uri.startswith("wamp."):
            return uri
        return self(uri)

    def node_name(self, uri: str) -> str | None:
        """``<name>`` of ``{base}.consumer.<name>.<leaf>``, else None."""
        prefix = f"{self.base}.consumer."
        if not uri.startswith(prefix):
            return None
        parts = uri[len(prefix) :].split(".")
        if len(parts) != 2 or not parts[1] or not valid_name(parts[0]):
            return None
        return parts[0]

    def owned_prefixes(self, name: str) -> tuple[str, str]:
        """URI prefixes that belong to whoever owns data-node ``name``.

        ``{base}.consumer.<name>.`` (the node's RPCs and live topic) and
        ``{base}.operator.<name>.`` (operator writes, docs/operating.md).
        """
        return f"{self.base}.consumer.{name}.", f"{self.base}.operator.{name}."

    def owned_name(self, uri: str) -> str | None:
        """``<name>`` of ``{base}.consumer.<name>.<leaf>`` or ``{base}.operator.<name>.<leaf>``."""
        name = self.node_name(uri)
        if name is not None:
            return name
        prefix = f"{self.base}.operator."
        if not uri.startswith(prefix):
            return None
        parts = uri[len(prefix) :].split(".")
        if len(parts) != 2 or not parts[1] or not valid_name(parts[0]):
            return None
        return parts[0]

    def is_operator(self, uri: str) -> bool:
        """True for a URI under ``{base}.operator.``."""
        return uri.startswith(f"{self.base}.operator.")

    # hub procedures (nodes call them) and topics (consumers follow them)
    @property
    def add(self) -> str:
        """``data_node.add(name, description, session_id) -> bool``."""
        return self("data_node.add")

    @property
    def subtract(self) -> str:
        """``data_node.subtract(name, session_id)``."""
        return self("data_node.subtract")

    @property
    def claim(self) -> str:
        """``data_node.claim(name, session=None) -> bool`` (extension)."""
        return self("data_node.claim")

    @property
    def list_nodes(self) -> str:
        """``consumer.get_data_node() -> [{"name", "description"}]``."""
        return self("consumer.get_data_node")

    @property
    def list_replicas(self) -> str:
        """``consumer.get_replicas() -> {name: sessions serving it}`` (extension)."""
        return self("consumer.get_replicas")

    @property
    def node_added(self) -> str:
        """Topic ``consumer.data_node_added`` (``{"name", "description"}``)."""
        return self("consumer.data_node_added")

    @property
    def node_subtracted(self) -> str:
        """Topic ``consumer.data_node_subtracted`` (``{"name", "description"}``)."""
        return self("consumer.data_node_subtracted")

    @property
    def hub_started(self) -> str:
        """Topic ``hub.started``: a new hub asks running nodes to re-add themselves."""
        return self("hub.started")

    @property
    def authorize(self) -> str:
        """The router-embedded dynamic authorizer's procedure."""
        return self("authorize")

    @property
    def authorizer_release(self) -> str:
        """``authorizer.release(name, session) -> bool`` (hub only): forget an owner."""
        return self("authorizer.release")

    @property
    def authorizer_owned(self) -> str:
        """``authorizer.owned() -> [[session, authid, name, replica], ...]`` (hub only)."""
        return self("authorizer.owned")


# -- times -----------------------------------------------------------------


def sisock_to_unix_time(t: float, now: float | None = None) -> float:
    """Convert a sisock time to UNIX seconds.

    Parameters
    ----------
    t : float
        Positive: UNIX seconds; zero or negative: that many seconds before now.
    now : float, optional
        The current time (for tests); default :func:`time.time`.
    """
    if t > 0:
        return float(t)
    return (time.time() if now is None else now) + t


def check_time(name: str, value: object) -> float:
    """Validate one time argument: a finite real number (bools refused).

    Raises
    ------
    BadArgument
        Naming ``name`` and what was expected.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise BadArgument(
            f"argument '{name}' must be a number of seconds (UNIX time, or <= 0 "
            f"for 'seconds before now'), got {type(value).__name__} {value!r:.80}"
        )
    if not math.isfinite(value):
        raise BadArgument(f"argument '{name}' must be finite, got {value!r}")
    return float(value)


def check_interval(start: object, end: object, now: float | None = None) -> tuple[float, float]:
    """Validate ``(start, end)`` and convert both to UNIX seconds.

    Raises
    ------
    BadArgument
        If either is not a finite number, or ``end < start`` after conversion.
    """
    s = sisock_to_unix_time(check_time("start", start), now)
    e = sisock_to_unix_time(check_time("end", end), now)
    return check_range(s, e)


def check_range(start: object, end: object) -> tuple[float, float]:
    """Validate absolute ``(start, end)`` in UNIX seconds (no "before now" conversion).

    Raises
    ------
    BadArgument
        If either is not a finite number, or ``end < start``.
    """
    s, e = check_time("start", start), check_time("end", end)
    if e < s:
        raise BadArgument(f"argument 'end' ({e:.3f}) is before 'start' ({s:.3f}); expected start <= end")
    return s, e


# -- get_data arguments --------------------------------------------------------

#: Downsampling methods (README, "Downsampling").
METHODS = ("mean", "min", "max", "first", "last", "minmax")

#: Accepted ``min_stride`` in seconds: a microsecond to ~300 years (keeps
#: epoch-aligned bin numbers exact in int64 and float64). 0 means none.
MIN_STRIDE_RANGE = (1e-6, 1e10)

#: Values of the ``encoding`` extension.
ENCODINGS = (None, "json", "binary")

#: ``max_message_bytes`` extension: the largest message the caller's transport
#: takes. Without it a node assumes autobahn ``ApplicationRunner``'s 1 MiB;
#: at most the router's 64 MiB; at least 64 KiB.
DEFAULT_MESSAGE_BYTES = 2**20
ROUTER_MESSAGE_BYTES = 64 * 2**20
MIN_MESSAGE_BYTES = 64 * 2**10
#: RawSocket carries at most 16 MiB per message (its length prefix).
RAWSOCKET_MESSAGE_BYTES = 2**24


def transport_message_bytes(kind: str) -> int:
    """The largest message a transport kind carries: ``"rawsocket"`` or ``"websocket"``."""
    return RAWSOCKET_MESSAGE_BYTES if kind == "rawsocket" else ROUTER_MESSAGE_BYTES


#: At most this many fields in one ``get_data`` call, each name at most
#: :data:`MAX_FIELD_NAME` characters.
MAX_FIELDS = 10_000
MAX_FIELD_NAME = 1_000


def check_min_stride(min_stride: object) -> float | None:
    """Validate ``min_stride``: None or 0 (no downsampling), or seconds in range.

    sisock 0.x callers pass 0 to mean "no downsampling"; it is accepted as None.

    Raises
    ------
    BadArgument
        If not a number, not finite, or outside :data:`MIN_STRIDE_RANGE`.
    """
    if min_stride is None:
        return None
    if isinstance(min_stride, bool) or not isinstance(min_stride, (int, float, np.integer, np.floating)):
        raise BadArgument(
            f"argument 'min_stride' must be a number of seconds or null, got "
            f"{type(min_stride).__name__} {min_stride!r:.80}"
        )
    if min_stride == 0:
        return None
    lo, hi = MIN_STRIDE_RANGE
    if not math.isfinite(min_stride) or not lo <= min_stride <= hi:
        raise BadArgument(
            f"argument 'min_stride' must be 0 or null (no downsampling) or between {lo:g} "
            f"and {hi:g} seconds, got {min_stride!r}"
        )
    return float(min_stride)


def values_per_bin(method: str | None) -> int:
    """Values one downsampled bin gives per field: 2 for ``minmax``, else 1."""
    return 2 if method == "minmax" else 1


def downsampled_values(span: float, min_stride: float, values_per_bin: int) -> int:
    """Most values a downsampled answer over ``span`` seconds can hold (bins at both edges
    included), with ``values_per_bin`` values per bin summed over fields."""
    return int((span / min_stride + 1) * max(1, values_per_bin))


def fitting_min_stride(span: float, values_per_bin: int, limit: int) -> float:
    """The ``min_stride`` to suggest when an answer is over ``limit`` values.

    The one formula every refusal uses (data cores, the web bridge): the
    smallest stride, rounded up to three significant digits, whose answer
    over ``span`` seconds holds at most ``limit`` values when each bin gives
    ``values_per_bin`` values (summed over fields; see :func:`values_per_bin`).
    """
    bins = max(1, limit // max(1, values_per_bin) - 1)
    stride = span / bins if span > 0 else 1.0
    stride = min(max(MIN_STRIDE_RANGE[0], stride * 1.01), MIN_STRIDE_RANGE[1])
    rounded = float(f"{stride:.3g}")
    rounded = rounded if rounded >= stride else float(f"{stride * 1.005:.3g}")
    return min(rounded, MIN_STRIDE_RANGE[1])  # a suggestion the caller may pass


def check_method(method: object) -> str:
    """Validate ``method`` (one of :data:`METHODS`)."""
    if not isinstance(method, str) or method not in METHODS:
        raise BadArgument(f"argument 'method' must be one of {', '.join(METHODS)}; got {method!r:.80}")
    return method


def check_encoding(encoding: object) -> str | None:
    """Validate the ``encoding`` extension: None (lists) or ``"binary"``."""
    if encoding not in ENCODINGS:
        raise BadArgument(f"argument 'encoding' must be one of 'json', 'binary' or omitted, got {encoding!r:.80}")
    return None if encoding == "json" else encoding  # type: ignore[return-value]


def check_max_message_bytes(value: object) -> int:
    """Validate ``max_message_bytes``; None gives :data:`DEFAULT_MESSAGE_BYTES`.

    The result is capped at :data:`ROUTER_MESSAGE_BYTES`.
    """
    if value is None:
        return DEFAULT_MESSAGE_BYTES
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < MIN_MESSAGE_BYTES
    ):
        raise BadArgument(
            f"argument 'max_message_bytes' must be a number of bytes >= {MIN_MESSAGE_BYTES} "
            f"(your client's WebSocket message limit), got {value!r:.80}"
        )
    return int(min(value, ROUTER_MESSAGE_BYTES))


def check_fields(fields: object) -> list[str]:
    """Validate the ``field`` argument of ``get_data``: a list of names (or one name).

    Duplicates are dropped, keeping the first occurrence.
    """
    if isinstance(fields, str):
        fields = [fields]
    if not isinstance(fields, (list, tuple)) or not all(isinstance(f, str) for f in fields):
        raise BadArgument(
            f"argument 'field' must be a list of field names (strings), got {type(fields).__name__} {fields!r:.80}"
        )
    if len(fields) > MAX_FIELDS:
        raise BadArgument(f"argument 'field' lists {len(fields)} fields; at most {MAX_FIELDS} per call")
    for f in fields:
        if len(f) > MAX_FIELD_NAME:
            raise BadArgument(f"argument 'field': a name of {len(f)} characters; at most {MAX_FIELD_NAME}")
    return list(dict.fromkeys(fields))


@dataclass(frozen=True)
class GetData:
    """A checked ``get_data`` call.

    Attributes
    ----------
    fields : list of str
    start, end : float
        UNIX seconds, ``start <= end``.
    min_stride : float or None
        None: no downsampling.
    method : str
        Downsampling method (``mean`` when not given).
    encoding : str or None
        ``"binary"`` or None (lists).
    max_message_bytes : int
        The largest message the caller takes (:mod:`sisock.core.budget`).
    """

    fields: list[str]
    start: float
    end: float
    min_stride: float | None = None
    method: str = "mean"
    encoding: str | None = None
    max_message_bytes: int = DEFAULT_MESSAGE_BYTES


_GET_DATA_ARGS = ("field", "start", "end", "min_stride")
_EXTENSIONS = ("method", "encoding", "max_message_bytes")


def parse_get_fields(args: tuple, kwargs: Mapping[str, Any], now: float | None = None) -> tuple[float, float]:
    """Check a ``get_fields(start, end)`` call; return UNIX ``(start, end)``."""
    if kwargs or len(args) != 2:
        raise BadArgument(
            f"get_fields takes exactly (start, end), got {len(args)} positional "
            f"argument(s) and keywords {sorted(kwargs)}"
        )
    return check_interval(*args, now=now)


def parse_get_data(args: tuple, kwargs: Mapping[str, Any], now: float | None = None) -> GetData:
    """Check a ``get_data(field, start, end, min_stride=None, **ext)`` call.

    Positional arguments may also be given by keyword (as sisock 0.x allows);
    the extensions are ``method`` and ``encoding``.

    Raises
    ------
    BadArgument
        Wrong arity, an argument given twice, an unknown keyword, or any
        argument of the wrong type or out of range.
    """
    if len(args) > 4:
        raise BadArgument(f"get_data takes (field, start, end, min_stride=None), got {len(args)} positional arguments")
    given = dict(zip(_GET_DATA_ARGS, args))
    ext = dict(kwargs)
    for key in _GET_DATA_ARGS:
        if key in ext:
            if key in given:
                raise BadArgument(f"argument '{key}' given twice")
            given[key] = ext.pop(key)
    unknown = sorted(set(ext) - set(_EXTENSIONS))
    if unknown:
        raise BadArgument(
            f"unknown argument(s) {unknown} to get_data; known extensions "
            "are 'method', 'encoding' and 'max_message_bytes'"
        )
    missing = [k for k in _GET_DATA_ARGS[:3] if k not in given]
    if missing:
        raise BadArgument(f"get_data takes (field, start, end, min_stride=None); argument(s) {missing} missing")
    start, end = check_interval(given["start"], given["end"], now=now)
    method = ext.get("method")
    return GetData(
        fields=check_fields(given["field"]),
        start=start,
        end=end,
        min_stride=check_min_stride(given.get("min_stride")),
        method="mean" if method is None else check_method(method),
        encoding=check_encoding(ext.get("encoding")),
        max_message_bytes=check_max_message_bytes(ext.get("max_message_bytes")),
    )


# -- fields --------------------------------------------------------------------

FIELD_TYPES = ("number", "string", "bool")


@dataclass(frozen=True)
class FieldSpec:
    """Metadata of one field, as ``get_fields`` reports it.

    Parameters
    ----------
    type : str
        ``"number"``, ``"string"`` or ``"bool"``.
    units : str or None
        Physical units.
    description : str or None
        Human-readable description.
    """

    type: str = "number"
    units: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"field type must be one of {FIELD_TYPES}, got {self.type!r}")

    def describe(self, timeline: str) -> dict:
        """The ``get_fields`` entry: ``{description, timeline, type, units}``."""
        return {"description": self.description, "timeline": timeline, "type": self.type, "units": self.units}

    def missing(self, n: int = 0) -> np.ndarray:
        """``n`` missing values of this type: NaN, False or ``""``."""
        return missing_values(self.type, n)


#: Per field type: the value standing for "no sample" and the numpy dtype of
#: the values cores return. HDF5 has no missing bool, so a missing bool reads
#: as False (use a number field for a flag that can be unknown).
MISSING_VALUE: dict[str, tuple[object, type]] = {
    "number": (np.nan, np.float64),
    "bool": (False, np.bool_),
    "string": ("", np.str_),
}


def missing_values(ftype: str, n: int = 0) -> np.ndarray:
    """``n`` missing values of a field type (NaN, False or ``""``), in the dtype cores return."""
    value, dtype = MISSING_VALUE[ftype]
    return np.full(n, value, dtype=dtype)


def timeline_interval(t: np.ndarray) -> float | None:
    """``get_fields``' ``interval``: mean seconds between the samples given (None if < 2)."""
    n = len(t)
    return float((t[-1] - t[0]) / (n - 1)) if n > 1 else None


# -- results -------------------------------------------------------------------


@dataclass
class TimelineData:
    """Times of one timeline in a :class:`Result`.

    Attributes
    ----------
    t : numpy.ndarray
        float64 UNIX times.
    finalized_until : float or None
        Samples stamped before this time will not change; None when nothing
        returned can change any more.
    """

    t: np.ndarray
    finalized_until: float | None = None

    def __getitem__(self, key: str) -> Any:
        """``tl["t"]``, ``tl["finalized_until"]``: the ``get_data`` reply's keys."""
        if key not in ("t", "finalized_until"):
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """As :meth:`dict.get` over the reply's keys."""
        return getattr(self, key) if key in ("t", "finalized_until") else default


@dataclass
class Result:
    """What ``get_data`` returns, as numpy arrays.

    Attributes
    ----------
    data : dict of str to numpy.ndarray
        One array per requested field (empty when it has no data).
    timelines : dict of str to TimelineData
        Times of each timeline that has data for a requested field.
    field_timeline : dict of str to str
        The timeline of each field with data.
    """

    data: dict[str, np.ndarray] = field(default_factory=dict)
    timelines: dict[str, TimelineData] = field(default_factory=dict)
    field_timeline: dict[str, str] = field(default_factory=dict)
    #: A progressive result (a raw archive read served as a stream): rows of
    #: some timelines are still being read into arrays already at their final
    #: length. ``filled[timeline]`` is how many leading rows of that timeline
    #: (its times and every field on it) are in place; a timeline absent from
    #: it is complete.
    filled: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    #: Each step of this iterator reads more rows (blocking disk work: run it
    #: in a worker thread) and updates :attr:`filled`; None once complete.
    pending: Iterator[Any] | None = field(default=None, repr=False, compare=False)

    # -- progressive results
    def rows_ready(self, timeline: str) -> int:
        """Leading rows of ``timeline`` whose times and values are in place."""
        return self.filled.get(timeline, len(self.timelines[timeline].t))

    def step(self) -> bool:
        """Read the next rows of a progressive result (blocking); False when complete."""
        if self.pending is None:
            return False
        try:
            next(self.pending)
            return True
        except StopIteration:
            self.pending = None
            self.filled.clear()
            return False

    def complete(self) -> Result:
        """Read every row still pending (blocking); return self."""
        while self.step():
            pass
        return self

    # -- the reply's keys, for code written against the get_data dict
    def __getitem__(self, key: str) -> Any:
        """``result["data"]``, ``result["timeline"]``, ``result["field_timeline"]``."""
        if key == "data":
            return self.data
        if key == "timeline":
            return self.timelines
        if key == "field_timeline":
            return self.field_timeline
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """As :meth:`dict.get` over the reply's keys."""
        try:
            return self[key]
        except KeyError:
            return default

    def add(
        self, timeline: str, t: np.ndarray, values: Mapping[str, np.ndarray], finalized_until: float | None = None
    ) -> None:
        """Add one timeline's times and its fields' values."""
        self.timelines[timeline] = TimelineData(np.asarray(t, dtype=np.float64), finalized_until)
        for name, v in values.items():
            self.data[name] = v
            self.field_timeline[name] = timeline

    def values_count(self) -> int:
        """Values in the result, summed over fields (what ``max_samples`` limits)."""
        return sum(len(v) for v in self.data.values())

    def groups(self) -> dict[str, list[str]]:
        """Timeline name -> its fields present in :attr:`data`, in order."""
        out: dict[str, list[str]] = {}
        for f in self.data:
            tl = self.field_timeline.get(f)
            if tl in self.timelines:
                out.setdefault(tl, []).append(f)
        return out

    def to_wire(self, encoding: str | None = None) -> dict:
        """The reply that travels: ``{"data", "timeline"}`` (+ ``field_timeline`` when binary).

        Only callers that asked for ``encoding="binary"`` (a sisock extension)
        get the ``field_timeline`` key, so a 0.x caller sees exactly the 0.x
        shape. A progressive result is completed first.
        """
        from .encoders import WAMP_ENCODINGS, encode  # the registry encodes Results

        return encode(WAMP_ENCODINGS[encoding], self)

    @classmethod
    def from_wire(cls, reply: Mapping[str, Any]) -> Result:
        """Decode a reply (lists or binary envelopes, any sisock version).

        A field is on the timeline the reply's ``field_timeline`` names
        (sisock binary replies); a field it does not name (sisock 0.x nodes
        send none) is put on the one timeline with as many samples, when
        there is exactly one (:meth:`guess_field_timeline`).
        """
        out = cls(
            data={k: wire.decode_array(v) for k, v in reply.get("data", {}).items()},
            timelines={
                name: TimelineData(np.asarray(wire.decode_array(tl["t"]), dtype=np.float64), tl.get("finalized_until"))
                for name, tl in reply.get("timeline", {}).items()
            },
        )
        out.field_timeline = out.guess_field_timeline()
        given = reply.get("field_timeline")
        if isinstance(given, Mapping):
            out.field_timeline.update({k: v for k, v in given.items() if k in out.data and v in out.timelines})
        return out

    @classmethod
    def coerce(cls, value: Result | Mapping[str, Any]) -> Result:
        """A :class:`Result` from a core's return value (a Result or a 0.x-shaped dict)."""
        if isinstance(value, Result):
            return value
        if not isinstance(value, Mapping) or "data" not in value or "timeline" not in value:
            raise TypeError(f"a data core returned {type(value).__name__}, expected a Result or {{'data', 'timeline'}}")
        out = cls(
            data={k: np.asarray(v) if not isinstance(v, np.ndarray) else v for k, v in value["data"].items()},
            timelines={
                name: TimelineData(np.asarray(tl["t"], dtype=np.float64), tl.get("finalized_until"))
                for name, tl in value["timeline"].items()
            },
        )
        given = value.get("field_timeline")
        out.field_timeline = dict(given) if given else out.guess_field_timeline()
        return out

    def guess_field_timeline(self) -> dict[str, str]:
        """The one guess of which timeline a field is on, for replies that do not say
        (sisock 0.x nodes): the timeline with as many samples, when exactly one has."""
        by_len: dict[int, list[str]] = {}
        for name, tl in self.timelines.items():
            by_len.setdefault(len(tl.t), []).append(name)
        out = {}
        for f, v in self.data.items():
            names = by_len.get(len(v), [])
            if len(v) and len(names) == 1:
                out[f] = names[0]
        return out
