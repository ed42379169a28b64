"""The ``sisock`` command and its sub-commands (README, "Commands").

Each sub-command lives in the module that implements it and exposes
``add_arguments(parser)``; this file only builds the parser and starts the
right thing. Settings come from flags, then environment, then defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



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


def cmd_serve(args) -> int:
    """Run the data-node server named by ``sisock serve <server>``."""
    from . import serve

    settings = settings_for(args, "server")
    _require_credentials(settings, "server")
    return serve.run(serve.server_module(args.server), args, settings, args.log_level)


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


def cmd_web(args) -> int:
    """Run the HTTP bridge and dashboard."""
    from .web import app

    settings = settings_for(args, "consumer")
    _require_credentials(settings, "consumer")
    return app.run(args, settings)


def cmd_credentials(args) -> int:
    """Issue, list or revoke site accounts."""
    from . import accounts

    return accounts.run(args)


def cmd_demo(args) -> int:
    """Run the whole stack on this machine."""
    from . import demo

    return demo.run(args)


def build_parser() -> argparse.ArgumentParser:
    """The full ``sisock`` argument parser."""
    from .web import app as web_app
    from sisock.servers.modbus import simulator

    from . import accounts, demo, generate, operator_cli, router
    from . import serve as servers

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
        *[(serve_sub, name, module.HELP, module.add_arguments, cmd_serve, True)
          for name, module in ((n, servers.server_module(n)) for n in servers.SERVERS)],
        (sim_sub, "modbus", "a simulated Modbus TCP instrument",
         simulator.add_arguments, cmd_sim_modbus, False),
        (archive_sub, "reindex", "rebuild an archive's index from its files (if lost or damaged)",
         _reindex_arguments, cmd_archive_reindex, False),
        (sub, "generate", "write a synthetic archive (demos, tests, benchmarks)",
         generate.add_arguments, cmd_generate, False),
        (sub, "web", "HTTP bridge: dashboard, Grafana SimpleJSON, REST/CSV, live events",
         web_app.add_arguments, cmd_web, True),
        (sub, "demo", "run router, hub and every example node on this machine",
         demo.add_arguments, cmd_demo, True),
        (sub, "credentials", "issue, list or revoke per-node accounts (for the router)",
         accounts.add_arguments, cmd_credentials, False),
        (sub, "set", "change a writable point of a node (operator account)",
         operator_cli.add_set_arguments, operator_cli.run_set, True),
        (sub, "audit", "print a node's audit log of writes (operator account)",
         operator_cli.add_audit_arguments, operator_cli.run_audit, True),
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
