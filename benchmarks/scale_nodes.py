"""Many data nodes in one process, for ``bench_scale.py``: live nodes or archive nodes.

Each node is its own :class:`~sisock.wamp.service.NodeService` (its own WAMP
session), built with the public node API and run together with
:func:`sisock.wamp.service.run_nodes`. Live nodes keep a small ring buffer of one
field ``x`` and publish every sample on their ``live`` topic at their own
rate; the sample's time stamp is the publish time, so a subscriber's clock
minus it is the publish-to-arrival latency (same machine, same clock).

    python benchmarks/scale_nodes.py live --prefix lv0 --count 25 --rates 1,10 --seed 0
    python benchmarks/scale_nodes.py archive --prefix ar0 DIR [DIR ...]

Prints one JSON line per event on stdout: ``{"joined": name, "t": time}``
when a node's session joins the router (before it registers or is listed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from sisock._quiet import silence_bjdata
from sisock.core.contract import DataCore
from sisock.core.timelines import RingBuffer, query_data, query_fields
from sisock.core.protocol import FieldSpec, Result

silence_bjdata()

#: Samples a live node keeps (about 10 min at 10 Hz).
CAPACITY = 6000


class LiveCore(DataCore):
    """A live node core: one field ``x``, sampled by :meth:`sample`.

    Parameters
    ----------
    name : str
        Data-node name.
    rate : float
        Samples per second (told in the description).
    """

    timeline = "live"

    def __init__(self, name: str, rate: float) -> None:
        self.name = name
        self.rate = rate
        self.description = f"benchmark live node, {rate:g} Hz"
        self.buffer = RingBuffer(CAPACITY, {"x": FieldSpec("number", "V", "a random walk")})
        self._x = 0.0
        self._rng = np.random.default_rng(abs(hash(name)) % 2**32)

    def sample(self) -> Result:
        """Append one sample stamped now; return it in ``get_data`` shape."""
        now = time.time()
        self._x += float(self._rng.normal())
        self.buffer.append(now, {"x": self._x})
        out = Result()
        out.add(self.timeline, np.asarray([now]), {"x": np.asarray([self._x])}, now)
        return out

    def get_fields(self, start: float, end: float) -> tuple[dict, dict]:
        """Fields with samples in ``[start, end)``."""
        return query_fields({self.timeline: self.buffer.snapshot()}, start, end)

    def get_data(self, fields, start, end, min_stride=None, method="mean", *, streaming=False) -> Result:
        """Buffered samples in ``[start, end)``."""
        return query_data(
            {self.timeline: self.buffer.snapshot()},
            fields,
            start,
            end,
            min_stride,
            method,
            self.limit(streaming),
            live=True,
        )


def rates_for(count: int, low: float, high: float, seed: int) -> list[float]:
    """``count`` whole rates spread evenly over ``[low, high]`` Hz (shuffled by ``seed``)."""
    if count == 1:
        return [float(low)]
    r = np.round(np.linspace(low, high, count))
    np.random.default_rng(seed).shuffle(r)
    return [float(x) for x in r]


def subscriber() -> int:
    """Subscribe to ``{base}.consumer.`` (prefix) with consumer credentials; count events."""
    from autobahn.wamp.types import SubscribeOptions
    from twisted.internet.task import LoopingCall

    from sisock.site.settings import load_settings
    from sisock.wamp.shell import make_component, run_components

    settings = load_settings("consumer")
    component = make_component(settings)
    count = [0]

    def on_event(*a, **k) -> None:
        count[0] += 1

    async def joined(session, details) -> None:
        await session.subscribe(on_event, settings.uris.full("consumer."), options=SubscribeOptions(match="prefix"))

    def report() -> None:
        sys.__stdout__.write(json.dumps({"events": count[0], "t": time.time()}) + "\n")
        sys.__stdout__.flush()

    component.on("join", joined)
    from twisted.internet import reactor

    reactor.callWhenRunning(lambda: LoopingCall(report).start(1.0))
    run_components([component], "warn")
    return 0


def publisher(args: argparse.Namespace) -> int:
    """Publish one-sample payloads at ``args.rate`` per second, in 10 ms bursts."""
    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall

    from sisock.site.settings import load_settings
    from sisock.wamp.service import NodeService, run_nodes
    from sisock.wamp.shell import make_component

    core = LiveCore(args.name, args.rate)
    settings = load_settings(args.role)
    if args.role == "server":
        service = NodeService(core, settings)
        component = service.component

        def publish() -> None:
            service.publish_live(core.sample())
    else:
        component = make_component(settings)
        topic = settings.uris.full("consumer.data_node_bench")
        state: dict = {}
        component.on("join", lambda session, details: state.update(session=session))
        component.on("leave", lambda session, details: state.pop("session", None))

        def publish() -> None:
            now = time.time()
            if "session" in state:
                state["session"].publish(
                    topic, {"data": {"x": [float(now % 7)]}, "timeline": {"live": {"t": [now], "finalized_until": now}}}
                )

    t0 = [0.0]
    sent = [0]

    def burst() -> None:
        if not t0[0]:
            t0[0] = time.monotonic()
        due = int(args.rate * (time.monotonic() - t0[0]))
        while sent[0] < due:
            publish()
            sent[0] += 1

    reactor.callWhenRunning(lambda: LoopingCall(burst).start(0.01, now=False))
    if args.role == "server":
        run_nodes([service], "warn")
    else:
        from sisock.wamp.shell import run_components

        run_components([component], "warn")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Build the services and run them until killed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="kind", required=True)
    lv = sub.add_parser("live", help="live nodes publishing at 1-10 Hz")
    lv.add_argument("--prefix", required=True, help="node names are PREFIX_0, PREFIX_1, ...")
    lv.add_argument("--count", type=int, default=25)
    lv.add_argument("--rates", default="1,10", help="LOW,HIGH Hz (default 1,10)")
    lv.add_argument("--seed", type=int, default=0)
    pb = sub.add_parser("publisher", help="one session publishing at a high rate (router cost)")
    pb.add_argument(
        "--role",
        choices=("server", "hub"),
        required=True,
        help="server: a live node on its own live topic (the router asks the "
        "authorizer each time); hub: the hub's account on a topic its static "
        "permission allows (no authorizer)",
    )
    pb.add_argument("--rate", type=float, default=1000.0)
    pb.add_argument("--name", default="pub_0")
    sub.add_parser(
        "subscriber", help="a consumer subscribed to every live topic (an archiver); prints its count every second"
    )
    ar = sub.add_parser("archive", help="one archive node per directory")
    ar.add_argument("--prefix", required=True)
    ar.add_argument("directories", nargs="+")
    args = ap.parse_args(argv)

    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall

    from sisock.wamp.service import NodeService, run_nodes
    from sisock.site.settings import load_settings

    settings = load_settings("server")
    services: list[NodeService] = []
    if args.kind == "publisher":
        return publisher(args)
    if args.kind == "subscriber":
        return subscriber()
    if args.kind == "live":
        low, high = (float(x) for x in args.rates.split(","))
        for i, rate in enumerate(rates_for(args.count, low, high, args.seed)):
            core = LiveCore(f"{args.prefix}_{i}", rate)
            service = NodeService(core, settings)
            services.append(service)

            def start(core=core, service=service) -> None:
                LoopingCall(lambda: service.publish_live(core.sample())).start(1.0 / core.rate, now=False)

            reactor.callWhenRunning(start)
    else:
        from twisted.internet import threads

        from sisock.archive.core import ArchiveCore

        for i, directory in enumerate(args.directories):
            core = ArchiveCore(directory, f"{args.prefix}_{i}", f"benchmark archive {i}")
            services.append(NodeService(core, settings))
            reactor.callWhenRunning(threads.deferToThread, core.warm)

    def joined(name: str):
        def report(session, details) -> None:
            # Twisted's logging replaces sys.stdout once the reactor runs
            sys.__stdout__.write(json.dumps({"joined": name, "t": time.time()}) + "\n")
            sys.__stdout__.flush()

        return report

    for s in services:
        s.component.on("join", joined(s.node.name))
    run_nodes(services, "warn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
