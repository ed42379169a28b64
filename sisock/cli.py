"""The ``sisock`` command and its sub-commands (DESIGN section 5).

Each sub-command lives in the module that implements it and exposes
``add_arguments(parser)``; this file only builds the parser and starts the
right thing. Settings come from flags, then environment, then defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._quiet import silence_bjdata


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("connection (flags > environment > defaults)")
    g.add_argument("--router-url", help="router URL (SISOCK_ROUTER_URL, default ws://127.0.0.1:8080/ws)")
    g.add_argument("--realm", help="WAMP realm (SISOCK_REALM, default sisock)")
    g.add_argument("--base-uri", help="base URI (SISOCK_BASE_URI, default org.simonsobservatory)")
    g.add_argument("--user", help="WAMP-CRA authid (SISOCK_USER; default: this role's generated user)")
    g.add_argument("--secret", help="WAMP-CRA secret (SISOCK_SECRET; prefer the environment)")
    g.add_argument("--tls-ca", help="CA file to verify a wss:// router (SISOCK_TLS_CA)")
    g.add_argument("--home", help="runtime directory (SISOCK_HOME, default ~/.config/sisock)")
    g.add_argument("--log-level", default="info", help="log level (default info)")


def settings_for(args: argparse.Namespace, role: str | None):
    """Resolve :class:`~sisock.settings.Settings` from parsed flags."""
    from .settings import load_settings

    return load_settings(role, router_url=args.router_url, realm=args.realm,
                         base_uri=args.base_uri, user=getattr(args, "user", None),
                         secret=getattr(args, "secret", None),
                         tls_ca=getattr(args, "tls_ca", None), home=args.home)


def _require_credentials(settings, role: str) -> None:
    if not (settings.user and settings.secret):
        raise SystemExit(
            f"sisock: no credentials for role {role!r}: start 'sisock router' once in this "
            f"SISOCK_HOME ({settings.home}) to generate them, or set SISOCK_USER and "
            "SISOCK_SECRET")


def _server_settings(args: argparse.Namespace):
    """Settings of a data node (role ``server``); exit clearly without credentials."""
    settings = settings_for(args, "server")
    _require_credentials(settings, "server")
    return settings


def _serve(services, log_level: str) -> int:
    from .node import run_nodes

    run_nodes(services, log_level)
    return 3 if any(s.failed for s in services) else 0


def cmd_hub(args) -> int:
    """Run the hub."""
    from sisock.hub.session import make_hub_component

    from .wamp import make_component, run_components

    settings = settings_for(args, "hub")
    _require_credentials(settings, "hub")
    component = make_component(settings)
    make_hub_component(component, settings)
    run_components([component], args.log_level)
    return 0


def cmd_serve_weather(args) -> int:
    """Serve the weather example node."""
    from sisock.servers import weather

    from .node import NodeService

    settings = _server_settings(args)
    node = weather.build(args, settings.home)
    return _serve([NodeService(node, settings)], args.log_level)


def cmd_serve_sensors(args) -> int:
    """Serve this machine's sensors live."""
    from twisted.internet.task import LoopingCall

    from sisock.servers import sensors

    from .node import NodeService

    settings = _server_settings(args)
    node = sensors.SensorsNode(args.name, args.interval, args.capacity)
    service = NodeService(node, settings)

    def tick() -> None:
        service.publish_live(node.sample())

    LoopingCall(tick).start(args.interval, now=True)
    return _serve([service], args.log_level)


def _warm_in_thread(node) -> None:
    """Let an archive core read its catalog off the reactor once it runs."""
    from twisted.internet import reactor, threads

    reactor.callWhenRunning(threads.deferToThread, node.warm)


def cmd_serve_hdf5(args) -> int:
    """Serve an HDF5 archive directory."""
    from sisock.servers import hdf5_archive

    from .node import NodeService

    settings = _server_settings(args)
    node = hdf5_archive.build(args)
    _warm_in_thread(node)
    return _serve([NodeService(node, settings)], args.log_level)


def cmd_serve_modbus(args) -> int:
    """Poll a Modbus instrument, archive it and serve it."""
    from sisock.servers.modbus import node as modbus_node
    from sisock.servers.modbus.config import load_config

    config = load_config(args.config)  # every config error before anything connects
    modbus_node.install_asyncio_reactor()
    settings = _server_settings(args)
    return modbus_node.run(args, settings, config, args.log_level)


def cmd_sim_modbus(args) -> int:
    """Run the simulated Modbus instrument."""
    from sisock.servers.modbus import simulator

    return simulator.run(args)


def cmd_generate(args) -> int:
    """Write a synthetic archive."""
    from . import generate

    return generate.run(args)


def cmd_archive_reindex(args) -> int:
    """Rebuild the index of an archive directory from its files."""
    import time

    from .archive import index

    if not Path(args.directory).is_dir():
        raise SystemExit(f"sisock archive reindex: {args.directory} is not a directory")
    t0 = time.perf_counter()
    n = index.rebuild(args.directory)
    print(f"indexed {n} file(s) of {args.directory} in {time.perf_counter() - t0:.1f} s")
    return 0


def _reindex_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", metavar="DIR", help="archive directory")


def cmd_router(args) -> int:
    """Start the Crossbar router."""
    from . import router

    return router.run(args)


def cmd_demo(args) -> int:
    """Run the whole stack on this machine."""
    from . import demo

    return demo.run(args)


def build_parser() -> argparse.ArgumentParser:
    """The full ``sisock`` argument parser."""
    from . import demo, generate, router
    from sisock.servers import hdf5_archive, sensors, weather
    from sisock.servers.modbus import node as modbus_node
    from sisock.servers.modbus import simulator

    parser = argparse.ArgumentParser(
        prog="sisock", description="Serve instrument timestreams over WAMP.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run a data-node server")
    serve_sub = serve.add_subparsers(dest="server", required=True, metavar="SERVER")
    sim = sub.add_parser("sim", help="simulated instruments")
    sim_sub = sim.add_subparsers(dest="device", required=True, metavar="DEVICE")
    archive = sub.add_parser("archive", help="maintain an archive directory")
    archive_sub = archive.add_subparsers(dest="action", required=True, metavar="ACTION")
    # (parent, name, help, add_arguments or None, handler, takes connection flags)
    commands = [
        (sub, "router", "start the Crossbar router with the shipped config",
         router.add_arguments, cmd_router, True),
        (sub, "hub", "run the hub (list of live data nodes)", None, cmd_hub, True),
        (serve_sub, "weather", "historical example: text files of 'time value'",
         weather.add_arguments, cmd_serve_weather, True),
        (serve_sub, "sensors", "live example: this machine's load and memory",
         sensors.add_arguments, cmd_serve_sensors, True),
        (serve_sub, "hdf5", "serve an HDF5 archive directory",
         hdf5_archive.add_arguments, cmd_serve_hdf5, True),
        (serve_sub, "modbus", "poll a Modbus TCP instrument, archive and serve it",
         modbus_node.add_arguments, cmd_serve_modbus, True),
        (sim_sub, "modbus", "a simulated Modbus TCP instrument",
         simulator.add_arguments, cmd_sim_modbus, False),
        (archive_sub, "reindex", "rebuild an archive's index from its files (if lost or damaged)",
         _reindex_arguments, cmd_archive_reindex, False),
        (sub, "generate", "write a synthetic archive (demos, tests, benchmarks)",
         generate.add_arguments, cmd_generate, False),
        (sub, "demo", "run router, hub and every example node on this machine",
         demo.add_arguments, cmd_demo, True),
    ]
    for parent, name, help_text, add_arguments, handler, connects in commands:
        p = parent.add_parser(name, help=help_text, description=help_text)
        if connects:
            _common(p)
        if add_arguments is not None:
            add_arguments(p)
        p.set_defaults(func=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sisock`` console script."""
    silence_bjdata()
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import SisockError

    try:
        return int(args.func(args) or 0)
    except SisockError as exc:  # bad configuration or arguments: say what, no traceback
        print(f"sisock {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
