"""Reply size budget: every message a node sends fits its receiver's limit.

Why this exists: autobahn's ``ApplicationRunner`` (the way sisock 0.x
consumers and many scripts connect, Twisted and asyncio alike) sets the
client's WebSocket ``maxMessagePayloadSize`` to 1 MiB. Neither the router
nor the callee can see that limit. A reply larger than it reaches the
caller, whose own autobahn fails the WebSocket with close code 1009
("message too big") and drops the TCP connection: the caller sees "WAMP
transport was lost", every call in flight fails, and the router logs
nothing because, for it, a client simply went away. A week of a 1 Hz
string field is 10 MB in msgpack/cbor and 13.7 MB in JSON.

So a node budgets in bytes *as encoded on the wire*, for each serializer
the router offers (json, msgpack, cbor; the router transcodes to the
caller's), against the caller's limit: by default
:data:`DEFAULT_MESSAGE_BYTES` (1 MiB); a caller that knows better (the
sisock client, whose limit is 64 MiB) says so with the ``get_data``
extension ``max_message_bytes``. A reply that does not fit is streamed as
progressive results in parts that fit, when the caller asked for them
with ``encoding="binary"``, or else refused with
:class:`~sisock.core.errors.TooMuchData` naming the limit and the
``min_stride`` that would fit.

Everything here is pure (numpy + the serializers autobahn itself uses);
no reactor.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping

import numpy as np

from . import wire
from .errors import TooMuchData
from sisock.core.protocol import (
    DEFAULT_MESSAGE_BYTES,
    MIN_MESSAGE_BYTES,
    MIN_STRIDE_RANGE,
    values_per_bin,
    ROUTER_MESSAGE_BYTES,
    Result,
    TimelineData,
    check_max_message_bytes,
)

__all__ = [
    "DEFAULT_MESSAGE_BYTES",
    "MIN_MESSAGE_BYTES",
    "ROUTER_MESSAGE_BYTES",
    "check_limit",
    "plan_reply",
    "split_live",
]

# Limits of a caller's messages (the ``max_message_bytes`` extension):
# DEFAULT_MESSAGE_BYTES is autobahn ``ApplicationRunner``'s
# ``maxMessagePayloadSize`` (Twisted and asyncio), ROUTER_MESSAGE_BYTES the
# router's own limit (``crossbar/config.json``).
#: Room kept for the WAMP envelope (message type, ids, options dict).
ENVELOPE_BYTES = 4096
#: Serializers the router offers (``crossbar/config.json``).
SERIALIZERS = ("json", "msgpack", "cbor")

# Worst case encoded bytes per element in any of the serializers (JSON text
# is the largest: "-2.2250738585072014e-308," is 25 characters).
_BOUND_PER_KIND = {"f": 25, "i": 21, "u": 21, "b": 6}


def check_limit(value: object) -> int:
    """Validate the ``max_message_bytes`` extension (:func:`sisock.core.protocol.check_max_message_bytes`)."""
    return check_max_message_bytes(value)


def _serializers() -> dict:
    from autobahn.wamp.serializer import CBORObjectSerializer, JsonObjectSerializer, MsgPackObjectSerializer

    return {"json": JsonObjectSerializer(), "msgpack": MsgPackObjectSerializer(), "cbor": CBORObjectSerializer()}


_SER: dict | None = None


def encoded_sizes(payload: Any) -> dict[str, int]:
    """Exact bytes of ``payload`` as one WAMP RESULT message, per serializer.

    Uses the serializers autobahn (and so the router) uses.
    """
    global _SER
    if _SER is None:
        _SER = _serializers()
    msg = [50, 2**53, {}, [payload]]
    return {name: len(s.serialize(msg)) for name, s in _SER.items()}


def _array_bound(a: Any) -> int:
    """Upper bound of the encoded bytes of one array in any serializer."""
    if isinstance(a, Mapping):  # binary envelope (base64 in JSON)
        return 4 * len(a.get("data", b"")) // 3 + 200
    arr = np.asarray(a) if not isinstance(a, list) else None
    if arr is not None and arr.dtype.kind in _BOUND_PER_KIND:
        return arr.size * _BOUND_PER_KIND[arr.dtype.kind] + 16
    items = a.tolist() if arr is not None else a
    n = 16
    for x in items:
        if isinstance(x, str):
            n += 6 * len(x.encode("utf-8", "surrogatepass")) + 9  # \uXXXX escapes, worst case
        elif isinstance(x, bytes):
            n += 4 * len(x) // 3 + 12
        else:
            n += 25
    return n


def upper_bound(reply: Mapping[str, Any]) -> int:
    """Cheap upper bound of a ``get_data``-shaped reply's encoded size."""
    n = ENVELOPE_BYTES
    for k, v in reply.get("data", {}).items():
        n += 6 * len(str(k)) + 16 + _array_bound(v)
    for k, tl in reply.get("timeline", {}).items():
        n += 6 * len(str(k)) + 64 + _array_bound(tl["t"])
    return n


def largest_size(payload: Any) -> tuple[int, str]:
    """``(bytes, serializer)`` of the largest encoding of ``payload``."""
    sizes = encoded_sizes(payload)
    name = max(sizes, key=lambda k: sizes[k])
    return sizes[name], name


def fits(reply: Mapping[str, Any], limit: int) -> bool:
    """True when ``reply`` fits ``limit`` bytes in every serializer."""
    if upper_bound(reply) <= limit:
        return True
    return largest_size(reply)[0] + ENVELOPE_BYTES <= limit


def part_bytes(limit: int, chunk_bytes: int = wire.CHUNK_BYTES) -> int:
    """Raw bytes per streamed part so that a part fits ``limit`` in JSON too.

    JSON carries bytes as base64 (4/3 of the raw size).
    """
    return max(4096, min(chunk_bytes, (limit - 8 * ENVELOPE_BYTES) * 3 // 4))


def _rows(result: Result) -> dict[str, int]:
    return {name: len(tl.t) for name, tl in result.timelines.items()}


#: Rows per timeline encoded to estimate the bytes per row of a large reply.
SAMPLE_ROWS = 20_000


def _sample(result: Result, tl: str, k: int) -> Result:
    """Timeline ``tl`` of ``result`` and its fields, ``k`` rows evenly picked.

    Reads a progressive result to the end first (only large one-message
    replies are sampled, and those are read whole anyway).
    """
    result.complete()
    t = result.timelines[tl].t
    idx = np.linspace(0, len(t) - 1, k).astype(np.int64) if len(t) > k else slice(None)
    out = Result()
    out.add(
        tl,
        t[idx],
        {f: v[idx] for f, v in result.data.items() if result.field_timeline.get(f) == tl and len(v) == len(t)},
        result.timelines[tl].finalized_until,
    )
    return out


def row_costs(
    result: Result | Mapping[str, Any], encoding: str | None = None
) -> tuple[dict[str, tuple[float, int, float]], int]:
    """Encoded bytes per row of each timeline, estimated from a sample.

    Returns
    -------
    (costs, fixed)
        ``costs[timeline] = (bytes_per_row, rows, seconds_covered)`` in the
        largest serializer; ``fixed`` is the bytes of everything that does
        not grow with rows (envelope, empty or unowned arrays).
    """
    result = Result.coerce(result)
    costs = {}
    for tl, n in _rows(result).items():
        if n == 0:
            continue
        sub = _sample(result, tl, SAMPLE_ROWS)
        k = len(sub.timelines[tl].t)
        t = result.timelines[tl].t
        costs[tl] = (largest_size(sub.to_wire(encoding))[0] / k, n, float(t[-1] - t[0]) if n > 1 else 0.0)
    fixed = ENVELOPE_BYTES
    orphans = {k: v for k, v in result.data.items() if k not in result.field_timeline}
    if orphans:
        fixed += largest_size(Result(data=orphans).to_wire(encoding))[0]
    return costs, fixed


def suggest_min_stride(
    result: Result | Mapping[str, Any],
    start: float,
    end: float,
    limit: int,
    encoding: str | None = None,
    method: str | None = None,
) -> float:
    """The ``min_stride`` (seconds) whose reply would fit ``limit``.

    Uses the encoded bytes per row of each timeline (:func:`row_costs`)
    and the time its samples cover, and solves ``sum(covered / s *
    bytes_per_bin) <= limit`` with a 25 % margin (bin stamps and means
    print longer than raw values), rounded up to 3 significant digits.
    It depends on the data, not on how far the requested range reaches
    beyond it, and stays within :data:`MIN_STRIDE_RANGE` (a float, so that
    every serializer carries it in the error).
    """
    costs, fixed = row_costs(result, encoding)
    per_bin = values_per_bin(method)
    span = max(0.0, min(end - start, MIN_STRIDE_RANGE[1]))
    need = sum(bpr * per_bin * max(covered, min(span / max(n, 1), 1.0)) for bpr, n, covered in costs.values())
    room = max(limit - fixed, limit / 10)
    s = need / room * 1.25 if need else 1.0
    s = min(max(s, MIN_STRIDE_RANGE[0]), MIN_STRIDE_RANGE[1])
    digits = 10 ** (math.floor(math.log10(s)) - 2)
    return float(min(math.ceil(s / digits) * digits, MIN_STRIDE_RANGE[1]))


def too_much(
    result: Result | Mapping[str, Any],
    size: int,
    serializer: str,
    limit: int,
    start: float,
    end: float,
    encoding: str | None,
    method: str | None,
    what: str = "get_data",
    extensions: bool = True,
) -> TooMuchData:
    """The error for a reply of ``size`` bytes over ``limit``.

    ``extensions=False`` leaves out the hints a sisock 0.x node cannot honour.
    """
    stride = suggest_min_stride(result, start, end, limit, encoding, method)
    streaming = (
        "" if encoding == "binary" or not extensions else ", or ask for encoding='binary' with progressive results"
    )
    declare = " (pass max_message_bytes if your client accepts more)" if extensions else ""
    return TooMuchData(
        f"the reply to {what} would be about {size} bytes encoded ({serializer}), more than "
        f"the message limit max_message_bytes={limit} of the caller{declare}; pass "
        f"min_stride >= {stride:g} s (or request a shorter range or fewer fields{streaming})",
        min_stride=stride,
        max_message_bytes=limit,
    )


def plan_reply(
    result: Result | Mapping[str, Any],
    start: float,
    end: float,
    limit: int,
    encoding: str | None,
    streaming: bool,
    method: str | None = None,
    chunk_bytes: int = wire.CHUNK_BYTES,
) -> tuple[dict | None, int]:
    """Decide how a core result travels: one message, streamed, or refused.

    Parameters
    ----------
    result : Result
        What the core returned (a ``get_data``-shaped mapping is taken too).
        A progressive result stays unread when it is to be streamed, and is
        read to the end when it travels as one message.
    start, end : float
        The query range (UNIX seconds), for the ``min_stride`` suggestion.
    limit : int
        The caller's per-message limit in bytes.
    encoding : {None, "binary"}
    streaming : bool
        The caller asked for progressive results (with binary encoding).
    method : str, optional
        Downsampling method (``minmax`` doubles rows per bin).
    chunk_bytes : int
        The node's preferred part size.

    Returns
    -------
    (reply, part_bytes)
        ``reply`` is the encoded one-message reply, or None to stream in
        parts of ``part_bytes`` raw bytes.

    Raises
    ------
    TooMuchData
        Neither fits; the message names the limit and a ``min_stride``.
    """
    result = Result.coerce(result)
    part = part_bytes(limit, chunk_bytes)
    if streaming:
        rest = _unsplit(result)
        if rest is not None and not fits(rest, limit - 4 * part // 3 - 2 * ENVELOPE_BYTES):
            size, ser = largest_size(rest)
            raise too_much(result, size, ser, limit, start, end, encoding, method)
        if wire.reply_nbytes(result) > part:
            return None, part
    if not streaming and sum(_rows(result).values()) > SAMPLE_ROWS:
        costs, fixed = row_costs(result, encoding)
        estimate = int(fixed + sum(bpr * n for bpr, n, _ in costs.values()))
        if estimate > 1.5 * limit:  # clearly too big: spare the full encoding
            raise too_much(result, estimate, "the largest of json, msgpack, cbor", limit, start, end, encoding, method)
    reply = result.to_wire(encoding)
    if upper_bound(reply) <= limit:
        return reply, part
    size, ser = largest_size(reply)
    if size + ENVELOPE_BYTES <= limit:
        return reply, part
    if streaming:
        return None, part
    raise too_much(result, size, ser, limit, start, end, encoding, method)


def _unsplit(result: Result) -> dict | None:
    """The arrays that streaming cannot split (strings, unowned), as one reply."""
    _, rest = wire.split_plan(result)
    return {"data": {k: wire.encode_array(result.data[k], "binary") for k in rest}, "timeline": {}} if rest else None


def split_live(result: Result | Mapping[str, Any], limit: int, encoding: str | None = None) -> Iterator[dict]:
    """Encoded live payloads of ``result``, each within ``limit`` bytes.

    A payload that does not fit is halved by rows (per timeline) until it
    does; a single row that does not fit is dropped (yields nothing) and
    :class:`TooMuchData` is raised after the rest is yielded.
    """
    result = Result.coerce(result)
    reply = result.to_wire(encoding)
    if fits(reply, limit):
        yield reply
        return
    rows = _rows(result)
    if max(rows.values(), default=0) <= 1:
        raise TooMuchData(f"one live sample is larger than the message limit of {limit} bytes")
    owner = result.field_timeline
    for half in (0, 1):
        part = Result()
        for k, v in result.data.items():
            tl = owner.get(k)
            if tl is None or tl not in rows:
                if half == 1:
                    part.data[k] = v
                continue
            n = rows[tl]
            part.data[k] = v[: n // 2] if half == 0 else v[n // 2 :]
            part.field_timeline[k] = tl
        for tl, info in result.timelines.items():
            n = rows[tl]
            t = info.t[: n // 2] if half == 0 else info.t[n // 2 :]
            if len(t):
                part.timelines[tl] = TimelineData(t, info.finalized_until)
        if part.timelines or part.data:
            yield from split_live(part, limit, encoding)
