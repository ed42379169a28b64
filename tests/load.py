"""Concurrent consumer load on an archive node (shared by test_load.py and bench_load.py).

``run_load`` opens ``sessions`` autobahn sessions on one asyncio loop (a
light load generator, so the node and router get the CPU), and each makes
``calls`` calls cycling through a mix: the whole archive downsampled to
~2000 points, one hour at full resolution, and the field listing of the
last day. Returns every latency and every error.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from sisock.site import credentials
from sisock.site.settings import load_settings

MIX = ("downsampled", "hour", "fields")


async def _session(url: str, realm: str, user: str, secret: str, node: str, calls: int,
                   span: tuple[float, float], hour_field: str, offset: int,
                   latencies: dict, errors: list, start_gate: asyncio.Event) -> None:
    from autobahn.asyncio.component import Component
    from autobahn.wamp.types import CallOptions

    done = asyncio.get_running_loop().create_future()
    base = "org.simonsobservatory.consumer." + node
    t0, t1 = span
    comp = Component(transports=[{"type": "websocket", "url": url, "serializers": ["msgpack"],
                                  "max_retries": 0,
                                  "options": {"max_message_payload_size": 64 * 2**20}}],
                     realm=realm, authentication={"wampcra": {"authid": user, "secret": secret}})

    @comp.on_join
    async def joined(session, details):
        await start_gate.wait()
        for i in range(calls):
            kind = MIX[(i + offset) % len(MIX)]
            t = time.perf_counter()
            try:
                if kind == "downsampled":
                    await session.call(f"{base}.get_data", ["stage_temp"], t0, t1,
                                       (t1 - t0) / 2000, encoding="binary",
                                       max_message_bytes=64 * 2**20)
                elif kind == "hour":
                    await session.call(f"{base}.get_data", [hour_field], t1 - 3600, t1,
                                       encoding="binary", max_message_bytes=64 * 2**20,
                                       options=CallOptions(on_progress=lambda *_: None))
                else:
                    await session.call(f"{base}.get_fields", t1 - 86400, t1)
                latencies[kind].append(time.perf_counter() - t)
            except Exception as exc:  # counted, reported by the caller
                errors.append(f"{kind}: {type(exc).__name__}: {exc}")
        await session.leave()

    @comp.on_disconnect
    def gone(session, was_clean):
        if not done.done():
            done.set_result(None)

    comp.start(asyncio.get_running_loop())
    await done


def run_load(url: str, home: str, node: str, sessions: int, calls: int,
             span: tuple[float, float], hour_field: str = "az") -> dict:
    """Run the load; return latencies per kind (seconds), errors and wall time."""
    settings = load_settings("consumer", router_url=url, home=home)
    creds = credentials.read(home)["consumer"]
    latencies: dict[str, list[float]] = {k: [] for k in MIX}
    errors: list[str] = []

    async def main():
        gate = asyncio.Event()
        tasks = [asyncio.ensure_future(_session(url, settings.realm, creds["authid"],
                                                creds["secret"], node, calls, span, hour_field,
                                                i, latencies, errors, gate))
                 for i in range(sessions)]
        await asyncio.sleep(0.5)
        t = time.perf_counter()
        gate.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 600)
        return time.perf_counter() - t

    wall = asyncio.run(main())
    every = [x for v in latencies.values() for x in v]
    return {"latencies": latencies, "errors": errors, "wall": wall, "calls": len(every),
            "p50": float(np.percentile(every, 50)) if every else None,
            "p99": float(np.percentile(every, 99)) if every else None}


def summary(r: dict) -> str:
    """One line per kind with p50/p99 in ms, then the totals."""
    lines = []
    for kind, v in r["latencies"].items():
        if v:
            lines.append(f"  {kind:12s} n={len(v):5d} p50={np.percentile(v, 50) * 1e3:7.1f} ms "
                         f"p99={np.percentile(v, 99) * 1e3:7.1f} ms")
    lines.append(f"  all          n={r['calls']:5d} p50={(r['p50'] or 0) * 1e3:7.1f} ms "
                 f"p99={(r['p99'] or 0) * 1e3:7.1f} ms; errors {len(r['errors'])}; "
                 f"{r['calls'] / r['wall']:.0f} calls/s over {r['wall']:.1f} s")
    return "\n".join(lines)
