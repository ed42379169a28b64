"""Concurrent consumer load on an archive node (shared by test_load.py and bench_load.py).

``run_load`` opens ``sessions`` autobahn sessions on one asyncio loop (a
light load generator, so the node and router get the CPU), and each makes
``calls`` calls cycling through a mix: the whole archive downsampled to
~2000 points, one hour at full resolution, and the field listing of the
last day. Every reply is checked (:func:`check_reply`); returns every
latency and every error.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from sisock.core import wire
from sisock.site import credentials
from sisock.site.settings import load_settings

MIX = ("downsampled", "hour", "fields")


def _count(value) -> int:
    """Values in one array of a reply: a binary envelope (its slice) or a list."""
    if isinstance(value, dict) and value.get(wire.ENVELOPE_KEY):
        return int(value["shape"][0])
    return len(value)


def check_reply(kind: str, reply, parts: list, hour_field: str) -> str | None:
    """What is wrong with a reply of ``kind`` (None when it is whole).

    Light checks, so the generator stays cheap: the downsampled year has
    between 1 and 2001 points, as many times as values; the streamed hour
    has, over its parts, as many times and values as its envelopes
    announce; the listing names the downsampled and the hour fields.
    """
    if kind == "fields":
        field, timeline = reply
        missing = {"stage_temp", hour_field} - set(field)
        return f"fields missing from the listing: {sorted(missing)}" if missing else None
    every = parts + [reply]
    name = "stage_temp" if kind == "downsampled" else hour_field
    values = sum(_count(p["data"][name]) for p in every if name in p.get("data", {}))
    times = sum(_count(tl["t"]) for p in every for tl in p.get("timeline", {}).values())
    if values != times or not values:
        return f"{values} values of {name} for {times} times"
    if kind == "downsampled" and values > 2001:
        return f"{values} points for a year downsampled to about 2000"
    if kind == "hour":
        announced = [
            p["data"][name]["total"]
            for p in every
            if isinstance(p.get("data", {}).get(name), dict) and "total" in p["data"][name]
        ]
        total = announced[0] if announced else values
        if total != values:
            return f"{values} of the {total} values announced for {name} arrived"
    return None


async def _session(
    url: str,
    realm: str,
    user: str,
    secret: str,
    node: str,
    calls: int,
    span: tuple[float, float],
    hour_field: str,
    offset: int,
    latencies: dict,
    errors: list,
    start_gate: asyncio.Event,
    mix: tuple[str, ...] = MIX,
    transport: str = "websocket",
) -> None:
    from autobahn.asyncio.component import Component
    from autobahn.wamp.types import CallOptions

    done = asyncio.get_running_loop().create_future()
    base = "org.simonsobservatory.consumer." + node
    t0, t1 = span
    if transport == "rawsocket":
        host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        config = {
            "type": "rawsocket",
            "url": f"rs://{host}:{port}",
            "serializer": "msgpack",
            "max_retries": 0,
            "options": {"max_message_payload_size": 16 * 2**20},
        }
    else:
        config = {
            "type": "websocket",
            "url": url,
            "serializers": ["msgpack"],
            "max_retries": 0,
            "options": {"max_message_payload_size": 64 * 2**20},
        }
    comp = Component(transports=[config], realm=realm, authentication={"wampcra": {"authid": user, "secret": secret}})

    @comp.on_join
    async def joined(session, details):
        await start_gate.wait()
        for i in range(calls):
            kind = mix[(i + offset) % len(mix)]
            parts: list = []
            t = time.perf_counter()
            try:
                if kind == "downsampled":
                    reply = await session.call(
                        f"{base}.get_data",
                        ["stage_temp"],
                        t0,
                        t1,
                        (t1 - t0) / 2000,
                        encoding="binary",
                        max_message_bytes=64 * 2**20,
                    )
                elif kind == "hour":
                    reply = await session.call(
                        f"{base}.get_data",
                        [hour_field],
                        t1 - 3600,
                        t1,
                        encoding="binary",
                        max_message_bytes=64 * 2**20,
                        options=CallOptions(on_progress=lambda part: parts.append(part)),
                    )
                else:
                    reply = await session.call(f"{base}.get_fields", t1 - 86400, t1)
                latencies[kind].append(time.perf_counter() - t)
                wrong = check_reply(kind, reply, parts, hour_field)
                if wrong:
                    errors.append(f"{kind}: bad reply: {wrong}")
            except Exception as exc:  # counted, reported by the caller
                errors.append(f"{kind}: {type(exc).__name__}: {exc}")
        await session.leave()

    @comp.on_disconnect
    def gone(session, was_clean):
        if not done.done():
            done.set_result(None)

    comp.start(asyncio.get_running_loop())
    await done


async def _loop_lag(lags: list, stop: asyncio.Event, period: float = 0.005) -> None:
    """How late the generator's own loop wakes up (seconds), every ``period``."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(period)
        lags.append(loop.time() - t - period)


def run_load(
    url: str,
    home: str,
    node: str,
    sessions: int,
    calls: int,
    span: tuple[float, float],
    hour_field: str = "az",
    mix: tuple[str, ...] = MIX,
    transport: str = "websocket",
) -> dict:
    """Run the load; return latencies per kind (seconds), errors and wall time.

    ``transport`` is ``"websocket"`` (as the web bridge and JSON clients
    connect) or ``"rawsocket"`` (as the notebook client does for binary
    replies when the router offers it). ``loop_lag_p99`` is how late the
    generator's own event loop ran (99th percentile, seconds): the part of
    the latencies spent waiting for the generator itself.
    """
    settings = load_settings("consumer", router_url=url, home=home)
    creds = credentials.read(home)["consumer"]
    latencies: dict[str, list[float]] = {k: [] for k in MIX}
    errors: list[str] = []

    lags: list[float] = []

    async def main():
        gate, stop = asyncio.Event(), asyncio.Event()
        tasks = [
            asyncio.ensure_future(
                _session(
                    url,
                    settings.realm,
                    creds["authid"],
                    creds["secret"],
                    node,
                    calls,
                    span,
                    hour_field,
                    i,
                    latencies,
                    errors,
                    gate,
                    mix,
                    transport,
                )
            )
            for i in range(sessions)
        ]
        await asyncio.sleep(0.5)
        t = time.perf_counter()
        gate.set()
        lag = asyncio.ensure_future(_loop_lag(lags, stop))
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), 600)
        finally:
            stop.set()
            await lag
        return time.perf_counter() - t

    wall = asyncio.run(main())
    every = [x for v in latencies.values() for x in v]
    return {
        "latencies": latencies,
        "errors": errors,
        "wall": wall,
        "calls": len(every),
        "p50": float(np.percentile(every, 50)) if every else None,
        "p99": float(np.percentile(every, 99)) if every else None,
        "loop_lag_p99": float(np.percentile(lags, 99)) if lags else None,
    }


def summary(r: dict) -> str:
    """One line per kind with p50/p99 in ms, then the totals."""
    lines = []
    for kind, v in r["latencies"].items():
        if v:
            lines.append(
                f"  {kind:12s} n={len(v):5d} p50={np.percentile(v, 50) * 1e3:7.1f} ms "
                f"p99={np.percentile(v, 99) * 1e3:7.1f} ms"
            )
    lines.append(
        f"  all          n={r['calls']:5d} p50={(r['p50'] or 0) * 1e3:7.1f} ms "
        f"p99={(r['p99'] or 0) * 1e3:7.1f} ms; errors {len(r['errors'])}; "
        f"{r['calls'] / r['wall']:.0f} calls/s over {r['wall']:.1f} s"
    )
    if r.get("loop_lag_p99") is not None:
        lines.append(f"  load generator's own loop late by p99 {r['loop_lag_p99'] * 1e3:.1f} ms")
    return "\n".join(lines)
