"""``sisock serve modbus --config FILE``: one data node per Modbus instrument.

A file declares one device (``example.toml``) or several (``[[device]]``
tables, ``devices.toml``); ``--config`` may be repeated. Every device is
its own data node (own name, session, poller, connection, archive and
writer thread), all polled from this one process (see
:mod:`sisock.wamp.host` for what keeps their faults apart).

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

Statistics: at shutdown each node writes one line to standard output,
``sisock-modbus-stats {json}`` (see :func:`run_stats`, plus ``node``, its
name): polls, missed ticks, gaps, requests, poll latency and archive
append time since start or since the last SIGUSR1, which zeroes the
counters of every node (so a benchmark can skip the warm-up). SIGUSR1 also
writes such a line per node, with the figures it zeroes, so whoever sent it
can see that the reset happened; the lines written at shutdown are always
the last ones. ``benchmarks/bench_modbus.py`` reads them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
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

from .config import ConfigError, NodeConfig, load_nodes

HELP = "poll a Modbus TCP instrument, archive and serve it"
REACTOR = "asyncio"

if TYPE_CHECKING:
    from .poller import Poller

#: Prefix of the statistics line written at shutdown.
STATS_PREFIX = "sisock-modbus-stats "

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``sisock serve modbus``."""
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        action="append",
        help="TOML file describing a device and its points "
        "(servers/modbus/example.toml), or several devices in "
        "[[device]] tables (servers/modbus/devices.toml); repeat it "
        "to poll the devices of several files from this process",
    )
    parser.add_argument(
        "--archive",
        type=Path,
        default=None,
        help="archive directory of a lone device (default: the device's "
        "'archive' key, else $SISOCK_HOME/archives/<node name>)",
    )
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=0.5,
        help="seconds between archive flushes at most; a crash loses at most about this much (default 0.5)",
    )
    parser.add_argument(
        "--min-free-mb",
        type=float,
        default=64.0,
        help="archiving pauses (polling and live go on) while the archive's "
        "filesystem has less free space than this, in MiB (default 64)",
    )


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
    return {
        "mean": float(values.mean() * 1e3),
        "p99": float(np.percentile(values, 99) * 1e3),
        "max": float(values.max() * 1e3),
    }


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


def configs(args: argparse.Namespace) -> list[NodeConfig]:
    """Every device of every ``--config`` file, checked (names unique across files).

    Raises
    ------
    ConfigError
        Naming the file, the device and the key; or ``--archive`` given for
        several devices.
    """
    out: list[NodeConfig] = []
    where: dict[str, Path] = {}
    for path in args.config:
        for config in load_nodes(path):
            if config.name in where:
                raise ConfigError(
                    f"{path}: device {config.name!r} is also declared in "
                    f"{where[config.name]}; every device needs its own name"
                )
            where[config.name] = path
            out.append(config)
    if args.archive is not None and len(out) > 1:
        raise ConfigError(
            f"--archive names one directory but --config declares {len(out)} "
            "devices: set 'archive' in each [[device]] table, or leave it to "
            "the default $SISOCK_HOME/archives/<name>"
        )
    return out


def build(args: argparse.Namespace, settings: Settings) -> list[Plan]:
    """One node per device: the archive core and the poller beside it.

    The configuration is read here, so its errors stop the command before
    anything connects.
    """
    nodes = configs(args)
    stats = _Statistics()
    plans = []
    for config in nodes:
        archive = args.archive or config.archive or Path(settings.home) / "archives" / config.name
        plans.append(device_plan(config, archive, args, stats))
    stats.install()
    return plans


class _Statistics:
    """The ``sisock-modbus-stats`` lines of every device of the process.

    SIGUSR1 writes and zeroes the figures of every device (one line each,
    with its ``node`` name), on the loop, between polls.
    """

    def __init__(self) -> None:
        self.resets: list = []

    def install(self) -> None:
        if not hasattr(signal, "SIGUSR1"):
            return

        def reset_all() -> None:
            for reset in self.resets:
                reset()

        def on_signal(*_: object) -> None:
            from twisted.internet import reactor

            reactor.callFromThread(reset_all)

        signal.signal(signal.SIGUSR1, on_signal)


def device_plan(config: NodeConfig, archive: Path, args: argparse.Namespace, stats: _Statistics) -> Plan:
    """Poll, archive, publish and serve one device."""
    from sisock.archive.core import ArchiveCore

    from .archiving import ThreadedArchiveSink
    from .poller import Poller

    archive.mkdir(parents=True, exist_ok=True)
    appends = AppendTimes()
    sink = ThreadedArchiveSink(
        archive,
        config.field_specs(),
        args.flush_interval,
        on_append=appends,  # a locked archive fails here
        min_free_bytes=int(args.min_free_mb * 2**20),
    ).start()
    if config.writes is not None:  # writable points: the core also writes (see .writing)
        from .writing import ModbusCore

        core = ModbusCore(archive, config.name, config.description, config, config.writes)
    else:
        core = ArchiveCore(archive, config.name, config.description)
    since = time.monotonic()
    poller: Poller | None = None

    def figures() -> dict[str, object]:
        assert poller is not None
        return {"node": config.name, **run_stats(poller, appends, time.monotonic() - since)}

    def reset() -> None:
        nonlocal since
        if poller is None:
            return
        write_stats(figures())
        reset_stats(poller, appends)
        since = time.monotonic()

    def start(publish: Publish) -> None:
        nonlocal poller
        from twisted.internet.defer import Deferred

        def on_poll(group: str, t: np.ndarray, values: dict) -> None:
            sink(group, t, values)
            publish(live_payload(group, t, values))

        poller = Poller(config, on_poll)
        if hasattr(core, "attach"):
            core.attach(poller, asyncio.get_event_loop())
        polling = Deferred.fromFuture(asyncio.ensure_future(poller.run()))
        polling.addErrback(lambda f: log.error("%s: polling stopped: %s", config.name, f.getTraceback()))

    def stop() -> None:
        if poller is not None:
            poller.stop()
        sink.close()
        if poller is None:
            return
        write_stats(figures())

    stats.resets.append(reset)
    return Plan(core, warm=[core.warm], start=[start], stop=[stop])


def example_config(port: int, host: str = "127.0.0.1") -> str:
    """The shipped ``example.toml`` pointed at a simulator on ``host:port``."""
    import re

    text = (Path(__file__).parent / "example.toml").read_text()
    text = re.sub(r"(?m)^port\s*=\s*\d+", f"port = {int(port)}", text, count=1)
    return re.sub(r'(?m)^host\s*=\s*"[^"]*"', f'host = "{host}"', text, count=1)
