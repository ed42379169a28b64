"""``sisock serve <server>``: one loop that runs every data-node server.

A server is a module under ``servers/`` (installed as ``sisock.servers.*``)
offering one small surface:

``HELP``
    One line for ``sisock serve --help``.
``REACTOR``
    ``"default"``, or ``"asyncio"`` for a server whose libraries need an
    asyncio loop (Twisted then runs on it).
``add_arguments(parser)``
    Its command-line options.
``build(args, settings) -> Plan | list[Plan]``
    Its core (:mod:`sisock.core.contract`) and what to start beside it
    (:class:`sisock.core.plan.Plan`); a list serves several nodes from
    this one process (e.g. several archives, several Modbus devices).
    Called before anything connects, so configuration errors stop the
    command at once.

:func:`run` wires each :class:`Plan` to a :class:`~sisock.wamp.service.NodeService`
(:mod:`sisock.wamp.host` keeps their faults apart) and runs the reactor.
Writing a new server means writing those four names
(``servers/weather`` is the shortest example).
"""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType

from sisock.core.plan import Plan, Publish  # noqa: F401 (the server contract, re-exported)
from sisock.site.settings import Settings

#: Entry-point group through which packages offer servers: a site's own node
#: package declares ``[project.entry-points."sisock.servers"] mynode =
#: "mypackage.mynode"`` and ``sisock serve mynode`` runs it.
ENTRY_POINT_GROUP = "sisock.servers"

#: The servers shipped with sisock: ``sisock serve`` name -> (module, one-line help).
#: They are declared as entry points too; this table keeps ``sisock --help``
#: from importing any server (and so h5py or pymodbus) and works from a
#: source checkout that was never installed.
BUILTIN = {
    "weather": ("sisock.servers.weather", "serve the example weather station (text files)"),
    "sensors": ("sisock.servers.sensors", "serve this machine's load, memory and temperatures live"),
    "hdf5": ("sisock.servers.hdf5_archive", "serve an HDF5 archive directory"),
    "modbus": ("sisock.servers.modbus", "poll a Modbus TCP instrument, archive and serve it"),
}


def servers(installed: bool = True) -> dict[str, tuple[str, str | None]]:
    """Every server ``sisock serve`` knows: name -> (module, help or None if unknown).

    The built-in ones and (``installed``) those declared in the
    :data:`ENTRY_POINT_GROUP` entry-point group by installed packages
    (nothing is imported here).
    """
    out: dict[str, tuple[str, str | None]] = dict(BUILTIN)
    if not installed:
        return out
    import importlib.metadata

    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in out:
            out[ep.name] = (ep.value.split(":")[0], None)
    return out


#: ``sisock serve`` names (kept for callers that list them).
SERVERS = tuple(BUILTIN)


def server_module(command: str) -> ModuleType:
    """The module of the ``sisock serve <command>`` server (imported now)."""
    module = BUILTIN[command][0] if command in BUILTIN else servers()[command][0]
    return importlib.import_module(module)


def install_asyncio_reactor() -> None:
    """Run Twisted on a new asyncio loop; must run before the reactor is imported."""
    import asyncio
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


def run(module: ModuleType, args: argparse.Namespace, settings: Settings, log_level: str = "info") -> int:
    """Build the server of ``module`` and serve its node(s) until stopped.

    ``build`` returns one :class:`Plan` or a list of them (several nodes in
    this process, see :mod:`sisock.wamp.host`).

    Returns
    -------
    int
        0, or 3 when a node's name is served by another session.
    """
    from .lean import collect_from_now, prepare

    builtin = module.__name__ in {m for m, _ in BUILTIN.values()}
    prepare(settings.router_url, builtin)  # before Twisted and autobahn are imported
    if module.REACTOR == "asyncio":
        install_asyncio_reactor()
    built = module.build(args, settings)
    plans = list(built) if isinstance(built, (list, tuple)) else [built]
    from sisock.wamp.host import NodeHost

    host = NodeHost(plans, settings)
    collect_from_now()
    return host.run(log_level)
