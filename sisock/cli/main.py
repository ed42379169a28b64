"""The ``sisock`` command and its sub-commands (README, "Commands").

Each sub-command lives in the module that implements it and exposes
``add_arguments(parser)``; this file only builds the parser and starts the
right thing. Settings come from flags, then environment, then defaults.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Callable
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
    """Resolve :class:`~sisock.site.settings.Settings` from parsed flags."""
    from sisock.site.settings import settings_from_args

    return settings_from_args(args, role)


def _require_credentials(settings, role: str) -> None:
    if not (settings.user and settings.secret):
        raise SystemExit(
            f"sisock: no credentials for role {role!r}: start 'sisock router' once in this "
            f"SISOCK_HOME ({settings.home}) to generate them, or set SISOCK_USER and "
            "SISOCK_SECRET"
        )


def cmd_hub(args) -> int:
    """Run the hub."""
    from sisock.hub.session import make_hub_component

    from sisock.wamp.shell import make_component, run_components

    settings = settings_for(args, "hub")
    _require_credentials(settings, "hub")
    from sisock.wamp.transport import HUB_RETRY_DELAY

    component = make_component(settings, retry_delay=HUB_RETRY_DELAY)
    make_hub_component(component, settings)
    run_components([component], args.log_level)
    return 0


def cmd_serve(args) -> int:
    """Run the data-node server named by ``sisock serve <server>``."""
    from . import serve

    try:
        settings = settings_for(args, "server")
        _require_credentials(settings, "server")
        return serve.run(serve.server_module(args.server), args, settings, args.log_level)
    finally:
        gc.enable()  # main() left it off for the start-up; serve.run turns it on when serving


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

    from sisock.archive import index

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
    from sisock.site import router

    return router.run(args)


def cmd_web(args) -> int:
    """Run the HTTP bridge and dashboard."""
    from sisock.web import app

    settings = settings_for(args, "consumer")
    _require_credentials(settings, "consumer")
    return app.run(args, settings)


def cmd_credentials(args) -> int:
    """Issue, list or revoke site accounts."""
    from sisock.site import accounts

    return accounts.run(args)


def cmd_set(args) -> int:
    """Change a writable point as an operator."""
    from . import operator as operator_cli

    return operator_cli.run_set(args)


def cmd_audit(args) -> int:
    """Print a node's audit log of writes."""
    from . import operator as operator_cli

    return operator_cli.run_audit(args)


def cmd_demo(args) -> int:
    """Run the whole stack on this machine."""
    from . import demo

    return demo.run(args)


#: Every command: (path of names, help, ``"module:function"`` adding its
#: arguments or None, handler, takes the connection flags). The argument
#: adders are imported only for the command being run, so ``sisock --help``
#: imports no server, no h5py and no pymodbus.
COMMANDS: list[tuple[tuple[str, ...], str, str | None, Callable, bool]] = [
    (
        ("router",),
        "start the Crossbar router with the shipped config",
        "sisock.site.router:add_arguments",
        cmd_router,
        True,
    ),
    (("hub",), "run the hub (list of live data nodes)", None, cmd_hub, True),
    (
        ("sim", "modbus"),
        "a simulated Modbus TCP instrument",
        "sisock.servers.modbus.simulator:add_arguments",
        cmd_sim_modbus,
        False,
    ),
    (
        ("archive", "reindex"),
        "rebuild an archive's index from its files (if lost or damaged)",
        "sisock.cli.main:_reindex_arguments",
        cmd_archive_reindex,
        False,
    ),
    (
        ("generate",),
        "write a synthetic archive (demos, tests, benchmarks)",
        "sisock.cli.generate:add_arguments",
        cmd_generate,
        False,
    ),
    (
        ("web",),
        "HTTP bridge: dashboard, Grafana SimpleJSON, REST/CSV, live events",
        "sisock.web.app:add_arguments",
        cmd_web,
        True,
    ),
    (
        ("demo",),
        "run router, hub and every example node on this machine",
        "sisock.cli.demo:add_arguments",
        cmd_demo,
        True,
    ),
    (
        ("credentials",),
        "issue, list or revoke per-node accounts (for the router)",
        "sisock.site.accounts:add_arguments",
        cmd_credentials,
        False,
    ),
    (
        ("set",),
        "change a writable point of a node (operator account)",
        "sisock.cli.operator:add_set_arguments",
        cmd_set,
        True,
    ),
    (
        ("audit",),
        "print a node's audit log of writes (operator account)",
        "sisock.cli.operator:add_audit_arguments",
        cmd_audit,
        True,
    ),
]

#: Commands with sub-commands: name -> (help, dest of the sub-command).
GROUPS = {
    "serve": ("run a data-node server", "server"),
    "sim": ("simulated instruments", "device"),
    "archive": ("maintain an archive directory", "action"),
}


def _commands(chosen: list[str] | None = None) -> list[tuple[tuple[str, ...], str, str | None, Callable, bool]]:
    from .serve import BUILTIN, servers

    # installed servers are looked up (importlib.metadata, tens of ms) only when
    # the command line may name one: not for a built-in server nor another command
    known = (
        chosen is not None and len(chosen) > 0 and (chosen[0] != "serve" or (len(chosen) > 1 and chosen[1] in BUILTIN))
    )
    served = [
        (("serve", name), help_text or f"the {name} server ({module})", f"{module}:add_arguments", cmd_serve, True)
        for name, (module, help_text) in servers(installed=not known).items()
    ]
    return served + COMMANDS


def _resolve(target: str) -> Callable[[argparse.ArgumentParser], None]:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def _chosen(argv: list[str]) -> list[str]:
    """The command words of ``argv`` (the leading words that are not options)."""
    words = []
    for a in argv:
        if a.startswith("-"):
            break
        words.append(a)
    return words


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``sisock`` argument parser.

    Parameters
    ----------
    argv : list of str, optional
        The arguments about to be parsed: only the chosen command's own
        arguments are added (and its module imported). None adds every
        command's arguments.
    """
    chosen = None if argv is None else _chosen(argv)
    parser = argparse.ArgumentParser(prog="sisock", description="Serve instrument timestreams over WAMP.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parents: dict[tuple[str, ...], argparse._SubParsersAction] = {(): sub}
    for path, help_text, add_arguments, handler, connects in _commands(chosen):
        if len(path) == 2 and (path[0],) not in parents:
            group_help, dest = GROUPS[path[0]]
            g = sub.add_parser(path[0], help=group_help, description=group_help)
            parents[(path[0],)] = g.add_subparsers(dest=dest, required=True, metavar=dest.upper())
        p = parents[path[:-1]].add_parser(path[-1], help=help_text, description=help_text)
        if chosen is None or list(path) == chosen[: len(path)]:
            if connects:
                _common(p)
            if add_arguments is not None:
                _resolve(add_arguments)(p)
        p.set_defaults(func=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sisock`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # Start-up allocates a lot and frees little: cyclic collections then are
    # wasted time (a tenth of a data node's start). ``sisock serve`` turns the
    # collector back on once its imports are done (sisock.cli.lean).
    collecting = gc.isenabled()
    gc.disable()
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
    except BaseException:
        if collecting:
            gc.enable()
        raise
    if collecting and args.func is not cmd_serve:
        gc.enable()
    from sisock.core.errors import SisockError

    try:
        return int(args.func(args) or 0)
    except SisockError as exc:  # bad configuration or arguments: say what, no traceback
        print(f"sisock {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
