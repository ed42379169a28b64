"""``sisock serve modbus --config FILE``: one data node per Modbus instrument.

Wiring only; the parts live elsewhere:

* :mod:`.config` reads and checks the TOML file before anything connects;
* :class:`.poller.Poller` reads the device on the asyncio loop (Twisted
  runs on that same loop through ``asyncioreactor``) and records outages
  as gaps;
* :class:`.archiving.ThreadedArchiveSink` archives every sample in a
  writer thread, whether or not the router is reachable;
* each poll is published on the node's ``live`` topic when connected;
* ``get_fields`` / ``get_data`` are served from the archive by the same
  core as ``sisock serve hdf5``
  (:class:`sisock.archive.core.ArchiveCore`).

Each poll group is one timeline of the archive and of the node.

Statistics: at shutdown the node writes one line to its standard output,
``sisock-modbus-stats {json}`` (see :func:`run_stats`): polls, missed
ticks, gaps, requests, poll latency and archive append time since start or
since the last SIGUSR1, which zeroes the counters (so a benchmark can skip
the warm-up). SIGUSR1 also writes such a line, with the figures it zeroes,
so whoever sent it can see that the reset happened; the line written at
shutdown is always the last one. ``benchmarks/bench_modbus.py`` reads it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sisock.core.protocol import Result
from sisock.core.plan import Plan, Publish
from sisock.site.settings import Settings

from .config import load_config

HELP = "poll a Modbus TCP instrument, archive and serve it"
REACTOR = "asyncio"

if TYPE_CHECKING:
    from .poller import Poller

#: Prefix of the statistics line written at shutdown.
STATS_PREFIX = "sisock-modbus-stats "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``sisock serve modbus``."""
    parser.add_argument("--config", type=Path, required=True,
                        help="TOML file describing the device and its points "
                             "(see servers/modbus/example.toml)")
    parser.add_argument("--archive", type=Path, default=None,
                        help="archive directory (default $SISOCK_HOME/archives/<node name>)")
    parser.add_argument("--flush-interval", type=float, default=0.5,
                        help="seconds between archive flushes at most; a crash loses at "
                             "most about this much (default 0.5)")
    parser.add_argument("--min-free-mb", type=float, default=64.0,
                        help="archiving pauses (polling and live go on) while the archive's "
                             "filesystem has less free space than this, in MiB (default 64)")


def live_payload(group: str, t: np.ndarray, values: dict) -> Result:
    """One poll as a result, for the ``live`` topic."""
    out = Result()
    out.add(group, t, values, float(t[-1]))
    return out


class AppendTimes:
    """Durations of archive appends, fed by the sink's ``on_append`` hook.

    Cheap enough for every batch: one counter and one deque append, safe to
    call from the writer thread.

    Parameters
    ----------
    keep : int
        Most recent durations kept for the summary.
    """

    def __init__(self, keep: int = 100_000) -> None:
        self.count = 0
        self.seconds: deque[float] = deque(maxlen=keep)

    def __call__(self, group: str, t: np.ndarray, values: dict, seconds: float) -> None:
        """Record one batch (``ThreadedArchiveSink.on_append`` signature)."""
        self.count += 1
        self.seconds.append(seconds)

    def reset(self) -> None:
        """Forget what was recorded."""
        self.count = 0
        self.seconds.clear()


def _ms(values: np.ndarray) -> dict[str, float | None]:
    if not values.size:
        return {"mean": None, "p99": None, "max": None}
    return {"mean": float(values.mean() * 1e3), "p99": float(np.percentile(values, 99) * 1e3),
            "max": float(values.max() * 1e3)}


def run_stats(poller: Poller, appends: AppendTimes, seconds: float) -> dict[str, object]:
    """Totals over all groups, as plain JSON-ready numbers.

    Parameters
    ----------
    poller : Poller
        Its :attr:`~.poller.Poller.stats` give polls, gaps, missed, requests
        and latencies.
    appends : AppendTimes
        Archive append durations.
    seconds : float
        Wall time the figures cover.

    Returns
    -------
    dict
        ``seconds, groups, polls, missed, gaps, requests,
        latency_{mean,p99,max}_ms, appends, append_{mean,p99,max}_ms``
        (None where nothing was measured).
    """
    stats = poller.stats.values()
    lat = np.fromiter((x for s in stats for x in s.latencies), dtype=np.float64)
    app = np.asarray(appends.seconds, dtype=np.float64)
    out: dict[str, object] = {"seconds": round(seconds, 3), "groups": len(poller.stats)}
    for key in ("polls", "missed", "gaps", "requests"):
        out[key] = sum(getattr(s, key) for s in stats)
    out.update({f"latency_{k}_ms": v for k, v in _ms(lat).items()})
    out["appends"] = appends.count
    out.update({f"append_{k}_ms": v for k, v in _ms(app).items()})
    return out


def write_stats(stats: dict[str, object]) -> None:
    """Write ``stats`` as one ``sisock-modbus-stats {json}`` line to standard output.

    Parameters
    ----------
    stats : dict
        Figures from :func:`run_stats`.
    """
    out = sys.__stdout__  # Twisted redirects sys.stdout into its log
    if out is not None:
        out.write(STATS_PREFIX + json.dumps(stats) + "\n")
        out.flush()


def reset_stats(poller: Poller, appends: AppendTimes) -> None:
    """Zero the poller's counters in place (call on the event loop) and the append times."""
    for s in poller.stats.values():
        s.polls = s.gaps = s.missed = s.requests = 0
        s.latencies.clear()
    appends.reset()


def build(args: argparse.Namespace, settings: Settings) -> Plan:
    """Poll, archive, publish and serve: the archive core and the poller beside it.

    The configuration is read here, so its errors stop the command before
    anything connects.
    """
    from sisock.archive.core import ArchiveCore

    from .archiving import ThreadedArchiveSink
    from .poller import Poller

    config = load_config(args.config)
    archive = args.archive or Path(settings.home) / "archives" / config.name
    archive.mkdir(parents=True, exist_ok=True)
    appends = AppendTimes()
    sink = ThreadedArchiveSink(archive, config.field_specs(), args.flush_interval,
                               on_append=appends,  # a locked archive fails here
                               min_free_bytes=int(args.min_free_mb * 2**20)).start()
    if config.writes is not None:  # writable points: the core also writes (see .writing)
        from .writing import ModbusCore

        core = ModbusCore(archive, config.name, config.description, config, config.writes)
    else:
        core = ArchiveCore(archive, config.name, config.description)
    since = time.monotonic()
    poller: Poller | None = None

    def start(publish: Publish) -> None:
        nonlocal poller
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred

        def on_poll(group: str, t: np.ndarray, values: dict) -> None:
            sink(group, t, values)
            publish(live_payload(group, t, values))

        def reset() -> None:
            nonlocal since
            write_stats(run_stats(poller, appends, time.monotonic() - since))
            reset_stats(poller, appends)
            since = time.monotonic()

        poller = Poller(config, on_poll)
        if hasattr(core, "attach"):
            core.attach(poller, asyncio.get_event_loop())
        if hasattr(signal, "SIGUSR1"):  # the reset runs on the loop, between polls
            signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(reset))
        Deferred.fromFuture(asyncio.ensure_future(poller.run()))

    def stop() -> None:
        if poller is not None:
            poller.stop()
        sink.close()
        if poller is None:
            return
        write_stats(run_stats(poller, appends, time.monotonic() - since))

    return Plan(core, warm=[core.warm], start=[start], stop=[stop])


def example_config(port: int, host: str = "127.0.0.1") -> str:
    """The shipped ``example.toml`` pointed at a simulator on ``host:port``."""
    import re

    text = (Path(__file__).parent / "example.toml").read_text()
    text = re.sub(r"(?m)^port\s*=\s*\d+", f"port = {int(port)}", text, count=1)
    return re.sub(r'(?m)^host\s*=\s*"[^"]*"', f'host = "{host}"', text, count=1)
