"""Malformed calls for the fuzz suite (hypothesis strategies and a checker).

Shared by tests/test_fuzz.py (small configuration, in ``make test``) and
benchmarks/bench_fuzz.py (the full one, >= 10 000 calls). Every call goes
through the real router on a raw autobahn session (so no client-side
validation hides anything); its outcome must be a valid reply or a WAMP
error under ``{base}.error.`` (not ``internal``) with a readable message,
and the caller's session must survive.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

BASE = "org.simonsobservatory"
KNOWN_FIELDS = [
    "az",
    "el",
    "cryo_state",
    "stage_temp",
    "compressor_on",
    "temperature",
    "humidity",
    "t_inlet",
    "fast_ok",
    "model",
    "load_1",
    "cpu_percent",
]
KEYWORDS = [
    "method",
    "encoding",
    "min_stride",
    "field",
    "start",
    "end",
    "max_message_bytes",
    "bogus",
    "details",
    "streaming",
    "limit",
    "",
]

ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
floats = st.floats(allow_nan=True, allow_infinity=True)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, st.text(max_size=30), st.binary(max_size=16))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
times = st.one_of(
    floats,
    ints,
    st.floats(-1e6, 0),
    st.floats(1.5e9, 2.0e9),
    st.just(0),
    st.text(max_size=10),
    st.none(),
    st.lists(ints, max_size=2),
)
huge_list = st.builds(lambda n, x: [x] * n, st.integers(0, 50_000), st.sampled_from(["az", "nope", "", 1, None, 2.5]))
field_args = st.one_of(
    st.lists(st.sampled_from(KNOWN_FIELDS + ["nope", "", "az"]), max_size=12),  # dupes too
    st.lists(st.text(max_size=40), max_size=5),
    huge_list,
    values,
    st.text(max_size=20),
)
strides = st.one_of(st.none(), floats, ints, st.floats(1e-9, 1e12), st.just(0), st.text(max_size=5), st.booleans())
methods = st.one_of(st.sampled_from(["mean", "min", "max", "first", "last", "minmax", "median", "", "MEAN"]), values)
keywords = st.dictionaries(st.sampled_from(KEYWORDS), st.one_of(values, methods, strides), max_size=3)


@st.composite
def plausible_get_data(draw):
    """Nearly valid calls: real and unknown fields, duplicates, edge ranges and strides."""
    fields = draw(st.lists(st.sampled_from(KNOWN_FIELDS + ["nope", "", "az"]), max_size=8))
    start = draw(
        st.one_of(
            st.floats(-7 * 86400, 0), st.integers(-(10**7), 0), st.floats(1.5e9, 2.0e9), st.just(0), st.just(-1e9)
        )
    )
    end = draw(st.one_of(st.just(0), st.floats(-3600, 0), st.floats(1.5e9, 2.1e9), st.just(start)))
    stride = draw(
        st.one_of(
            st.none(),
            st.floats(1e-6, 1e10),
            st.sampled_from([0, -1, 1e-7, 1e11, 1, 60, 3600, float("nan"), float("inf")]),
        )
    )
    kw = {}
    if draw(st.booleans()):
        kw["method"] = draw(st.sampled_from(["mean", "min", "max", "first", "last", "minmax", "median", None, 3]))
    if draw(st.booleans()):
        kw["encoding"] = draw(st.sampled_from(["binary", "json", None, "bson", 1]))
    if draw(st.booleans()):
        kw["max_message_bytes"] = draw(st.sampled_from([2**16, 2**20, 64 * 2**20, 2**40, 10, -1, "big", None]))
    args = [fields, start, end] + ([stride] if draw(st.booleans()) else [])
    if len(args) == 3 and stride is not None and draw(st.booleans()):
        kw["min_stride"] = stride
    return args, kw


@st.composite
def wild_get_data(draw):
    """Anything: wrong types and arity, NaN/inf, huge and nested lists, odd keywords."""
    full = [draw(field_args), draw(times), draw(times), draw(strides), draw(values), draw(values)]
    arity = draw(st.sampled_from([0, 1, 2, 3, 3, 3, 4, 4, 4, 5, 6]))
    return full[:arity], draw(keywords)


def get_data_calls():
    """Half plausible, half wild get_data calls."""
    return st.one_of(plausible_get_data(), wild_get_data())


@st.composite
def get_fields_calls(draw):
    """Arguments of one get_fields call (right arity more often than not)."""
    full = [draw(st.one_of(times, st.floats(-86400, 0))), draw(st.one_of(times, st.just(0))), draw(values)]
    arity = draw(st.sampled_from([0, 1, 2, 2, 2, 2, 3]))
    kw = draw(st.dictionaries(st.sampled_from(["start", "end", "bogus"]), values, max_size=2))
    return full[:arity], kw


HUB_CONSUMER = ["consumer.get_data_node"]
HUB_SERVER = ["data_node.add", "data_node.subtract", "data_node.claim"]


@st.composite
def hub_calls(draw, leaves=tuple(HUB_CONSUMER + HUB_SERVER)):
    """``(leaf, args, kwargs)`` for the hub's procedures."""
    leaf = draw(st.sampled_from(list(leaves)))
    name = draw(st.one_of(st.text(max_size=20).map(lambda s: "fuzz-" + s), values))
    full = [name, draw(values), draw(values), draw(values)]
    arity = draw(st.integers(0, 4))
    kw = draw(st.dictionaries(st.sampled_from(["name", "description", "session_id", "x"]), values, max_size=2))
    return leaf, full[:arity], kw


class Outcome(Exception):
    """A reply or error that breaks the contract."""


def check_error(exc: Exception, uri: str) -> str:
    """The error kind, or raise :class:`Outcome` when the error is not acceptable."""
    from autobahn.wamp.exception import ApplicationError

    if not isinstance(exc, ApplicationError):
        raise Outcome(f"{uri}: not a WAMP error: {type(exc).__name__}: {exc}")
    message = exc.args[0] if exc.args else ""
    if not exc.error.startswith(BASE + ".error."):
        raise Outcome(f"{uri}: error outside {BASE}.error.: {exc.error} {message!r:.300}")
    kind = exc.error[len(BASE) + 7 :]
    if kind == "internal":
        raise Outcome(f"{uri}: internal error (a bug): {message!r:.500}")
    if not isinstance(message, str) or not 10 <= len(message) <= 2000 or "Traceback" in message:
        raise Outcome(f"{uri}: unreadable message {message!r:.300}")
    return kind


def check_reply(leaf: str, reply: Any, uri: str) -> None:
    """Raise :class:`Outcome` unless ``reply`` has the documented shape."""
    ok = True
    if leaf == "get_data":
        ok = (
            isinstance(reply, dict)
            and isinstance(reply.get("data"), dict)
            and isinstance(reply.get("timeline"), dict)
            and all(isinstance(v, dict) and "t" in v for v in reply["timeline"].values())
        )
    elif leaf == "get_fields":
        ok = isinstance(reply, (list, tuple)) and len(reply) == 2 and all(isinstance(x, dict) for x in reply)
    elif leaf == "consumer.get_data_node":
        ok = isinstance(reply, list) and all(isinstance(x, dict) and "name" in x for x in reply)
    elif leaf in ("data_node.add", "data_node.claim"):
        ok = isinstance(reply, bool)
    elif leaf == "data_node.subtract":
        ok = reply is None
    if not ok:
        raise Outcome(f"{uri}: reply of the wrong shape: {reply!r:.300}")


def raw_call(client, uri: str, args: list, kwargs: dict, timeout: float = 60.0):
    """Call on the client's autobahn session directly (no client-side checks)."""
    session = client._session
    if session is None:
        raise Outcome("the caller's session is gone")

    async def go():
        return await session.call(uri, *args, **kwargs)

    return asyncio.run_coroutine_threadsafe(go(), client._loop).result(timeout)


def _unsendable(exc: Exception) -> bool:
    """True if the caller's own serializer refused the arguments (never reached the router)."""
    from autobahn.wamp.exception import SerializationError

    return isinstance(exc, (SerializationError, OverflowError, ValueError, TypeError)) and not hasattr(exc, "error")


def fuzz_target(
    client, uri_prefix: str, leaf_strategy, leaf: str | None, n: int, counts: Counter, derandomize: bool = False
) -> None:
    """Run ``n`` generated calls and count outcomes in ``counts``.

    ``leaf`` is ``"get_data"``/``"get_fields"`` (then ``uri_prefix`` is the
    node's ``{base}.consumer.<name>``) or None for hub calls (strategy
    yields the leaf). Raises (through hypothesis, shrunk) on the first
    contract violation; checks after every call that the session is the
    same one (no drop, no reconnect).
    """
    session0 = client._session
    rejoins0 = len(client.rejoin_seconds)

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
        print_blob=False,
    )
    @given(leaf_strategy)
    def one(call):
        if leaf is None:
            lf, args, kwargs = call
            uri = f"{BASE}.{lf}"
        else:
            lf, (args, kwargs) = leaf, call
            uri = f"{uri_prefix}.{lf}"
        kwargs = {k: v for k, v in kwargs.items() if k != "options"}
        try:
            reply = raw_call(client, uri, args, kwargs)
        except Outcome:
            raise
        except Exception as exc:
            if _unsendable(exc):
                counts["unsendable"] += 1
                return
            counts[f"error.{check_error(exc, uri)}"] += 1
        else:
            check_reply(lf, reply, uri)
            counts["ok"] += 1
        if client._session is not session0 or len(client.rejoin_seconds) != rejoins0:
            raise Outcome(f"{uri}: the caller's session was dropped by args={args!r:.200} kwargs={kwargs!r:.200}")

    one()
