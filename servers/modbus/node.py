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
  (:class:`sisock.servers.hdf5_archive.ArchiveNode`).

Each poll group is one timeline of the archive and of the node.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import numpy as np

from .config import NodeConfig


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


def live_payload(group: str, t: np.ndarray, values: dict) -> dict:
    """One poll in ``get_data`` shape, for the ``live`` topic."""
    return {"data": values, "timeline": {group: {"t": t, "finalized_until": float(t[-1])}}}


def install_asyncio_reactor() -> None:
    """Run Twisted on asyncio's loop (pymodbus is asyncio-only).

    Must run before anything imports ``twisted.internet.reactor``.
    """
    import sys

    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor

        if type(reactor).__name__ != "AsyncioSelectorReactor":
            raise RuntimeError("a non-asyncio Twisted reactor is already installed")
        return
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)


def run(args: argparse.Namespace, settings, config: NodeConfig, log_level: str) -> int:
    """Poll, archive, publish and serve until stopped."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from sisock.node import NodeService, run_nodes
    from sisock.servers.hdf5_archive import ArchiveNode

    from .archiving import ThreadedArchiveSink
    from .poller import Poller

    archive = args.archive or Path(settings.home) / "archives" / config.name
    archive.mkdir(parents=True, exist_ok=True)
    sink = ThreadedArchiveSink(archive, config.field_specs(), args.flush_interval).start()
    core = ArchiveNode(archive, config.name, config.description)
    service = NodeService(core, settings)

    def on_poll(group: str, t: np.ndarray, values: dict) -> None:
        sink(group, t, values)
        service.publish_live(live_payload(group, t, values))

    poller = Poller(config, on_poll)

    def start_poller() -> None:
        Deferred.fromFuture(asyncio.ensure_future(poller.run()))

    def stop_poller() -> None:
        poller.stop()
        sink.close()

    reactor.callWhenRunning(start_poller)
    reactor.addSystemEventTrigger("before", "shutdown", stop_poller)
    run_nodes([service], log_level)
    return 3 if service.failed else 0


def example_config(port: int, host: str = "127.0.0.1") -> str:
    """The shipped ``example.toml`` pointed at a simulator on ``host:port``."""
    import re

    text = (Path(__file__).parent / "example.toml").read_text()
    text = re.sub(r"(?m)^port\s*=\s*\d+", f"port = {int(port)}", text, count=1)
    return re.sub(r'(?m)^host\s*=\s*"[^"]*"', f'host = "{host}"', text, count=1)
