"""Raw TCP round trips with the load's shape: the floor the machine gives right now.

``bench_load.py`` prints this beside sisock's figures, measured in the same
run: a server process answers each one-byte request with as many bytes as
sisock's reply of that kind carries (arrays only), and ``sessions``
connections on one asyncio loop (like ``tests/load.py``) make ``calls``
calls each through the same mix. No WAMP, no router, no archive: what is
left is loopback TCP, two Python processes and the machine's other load.

    python benchmarks/tcp_peer.py serve PORT     (the server; started by run_peer)
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import numpy as np

#: Reply bytes per kind: times and values as float64 (the downsampled year:
#: ~2000 points; an hour at 10 Hz: 36 000 samples) and a listing's msgpack.
REPLY_BYTES = {"downsampled": 2 * 2000 * 8, "hour": 2 * 36000 * 8, "fields": 900}
KINDS = tuple(REPLY_BYTES)


async def _serve(port: int) -> None:
    payloads = [bytes(REPLY_BYTES[k]) for k in KINDS]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                kind = (await reader.readexactly(1))[0]
                body = payloads[kind]
                writer.write(len(body).to_bytes(4, "little") + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


async def _client(
    port: int, calls: int, offset: int, latencies: dict, gate: asyncio.Event, mix: tuple[str, ...]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await gate.wait()
    for i in range(calls):
        kind = mix[(i + offset) % len(mix)]
        t = time.perf_counter()
        writer.write(bytes([KINDS.index(kind)]))
        n = int.from_bytes(await reader.readexactly(4), "little")
        await reader.readexactly(n)
        latencies[kind].append(time.perf_counter() - t)
    writer.close()


def run_peer(sessions: int, calls: int, port: int, mix: tuple[str, ...] = KINDS) -> dict:
    """Start the server, run the round trips, stop it; same result shape as ``run_load``."""
    server = subprocess.Popen([sys.executable, __file__, "serve", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        latencies: dict[str, list[float]] = {k: [] for k in mix}

        async def main() -> float:
            gate = asyncio.Event()
            tasks = [asyncio.ensure_future(_client(port, calls, i, latencies, gate, mix)) for i in range(sessions)]
            await asyncio.sleep(0.2)
            t = time.perf_counter()
            gate.set()
            await asyncio.gather(*tasks)
            return time.perf_counter() - t

        wall = asyncio.run(main())
    finally:
        server.terminate()
        server.wait(10)
    every = [x for v in latencies.values() for x in v]
    return {
        "latencies": latencies,
        "errors": [],
        "wall": wall,
        "calls": len(every),
        "p50": float(np.percentile(every, 50)),
        "p99": float(np.percentile(every, 99)),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        asyncio.run(_serve(int(sys.argv[2])))
