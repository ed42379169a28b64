"""``sisock router``: render the Crossbar config and start the real router.

The template ``crossbar/config.json`` holds no secret. :func:`render`
returns the config with realm, base URI, listening address, TLS files and
the WAMP-CRA users filled in; :func:`prepare` writes it into
``$SISOCK_HOME/router``; :func:`main` execs ``crossbar start``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
from pathlib import Path

from . import credentials
from sisock.core.protocol import transport_message_bytes
from .settings import Settings, load_settings


def template_path() -> Path:
    """Locate ``crossbar/config.json`` (source tree or installed copy)."""
    here = Path(__file__).resolve().parents[2] / "crossbar" / "config.json"
    if here.exists():
        return here
    installed = Path(sys.prefix) / "share" / "sisock" / "crossbar" / "config.json"
    if installed.exists():
        return installed
    raise FileNotFoundError("cannot find the router template crossbar/config.json")


def _substitute(obj, mapping: dict[str, str]):
    if isinstance(obj, str):
        for key, value in mapping.items():
            obj = obj.replace("{" + key + "}", value)
        return obj
    if isinstance(obj, list):
        return [_substitute(x, mapping) for x in obj]
    if isinstance(obj, dict):
        return {_substitute(k, mapping): _substitute(v, mapping) for k, v in obj.items()}
    return obj


def render(template: dict, settings: Settings, creds: dict, tls: dict[str, Path] | None = None) -> dict:
    """Fill the router template.

    Parameters
    ----------
    template : dict
        The parsed ``crossbar/config.json``.
    settings : Settings
        Realm, base URI and router URL (its host and port are listened on).
    creds : dict
        ``{role: {"authid", "secret"}}`` as from :func:`credentials.ensure`.
    tls : dict, optional
        ``{"key", "cert"}`` paths; given for a ``wss://`` URL.

    Returns
    -------
    dict
        A complete Crossbar configuration.
    """
    config = _substitute(copy.deepcopy(template), {"realm": settings.realm, "base": settings.base_uri})
    worker = config["workers"][0]
    transport = worker["transports"][0]
    endpoint = transport["endpoint"]
    endpoint["interface"] = settings.host
    endpoint["port"] = settings.port
    if tls is not None:
        endpoint["tls"] = {"key": str(tls["key"]), "certificate": str(tls["cert"])}
    users = {entry["authid"]: {"secret": entry["secret"], "role": role} for role, entry in creds.items()}
    for sub in _wamp_transports(transport, settings.websocket_path):
        sub["auth"]["wampcra"]["users"] = copy.deepcopy(users)
        # message limits come from the protocol's constants, not from the template
        sub.setdefault("options", {})["max_message_size"] = transport_message_bytes(sub["type"])
    return config


def _wamp_transports(transport: dict, websocket_path: str) -> list[dict]:
    """The WAMP transports inside one listening transport of the template.

    The shipped template has one ``universal`` transport: on the router
    URL's port it speaks WebSocket (on the URL's path, and on ``/ws``) and
    RawSocket (told apart by the first byte a client sends). A plain
    ``websocket`` or ``rawsocket`` transport is returned as is.
    """
    if transport["type"] != "universal":
        return [transport]
    paths = transport.get("websocket", {})
    if websocket_path and websocket_path not in paths and paths:
        paths[websocket_path] = copy.deepcopy(next(iter(paths.values())))
    subs = list(paths.values())
    if "rawsocket" in transport:
        subs.append(transport["rawsocket"])
    return subs


def prepare(settings: Settings, proxies: int = 0) -> Path:
    """Write the rendered config into ``$SISOCK_HOME/router`` (mode 0600).

    ``proxies`` > 0 puts that many proxy workers in front of the router
    worker (:mod:`sisock.site.proxies`).

    Returns
    -------
    pathlib.Path
        The Crossbar node directory (``--cbdir``).
    """
    creds = credentials.ensure(settings.home)
    tls = credentials.ensure_tls(settings.home, settings.host) if settings.is_tls else None
    template = json.loads(template_path().read_text())
    config = render(template, settings, creds, tls)
    from .accounts import add_wampcra_users

    add_wampcra_users(config, settings.home)  # accounts issued with `sisock credentials add`
    cbdir = Path(settings.home) / "router"
    cbdir.mkdir(parents=True, exist_ok=True)
    if proxies:
        from .proxies import with_proxies

        config = with_proxies(config, proxies, cbdir)
    target = cbdir / "config.json"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)
    return cbdir


def offers_rawsocket(settings: Settings) -> bool:
    """True if the router last configured in ``settings.home`` speaks RawSocket
    on ``settings``' host and port (read from its rendered config; no network)."""
    try:
        config = json.loads((Path(settings.home) / "router" / "config.json").read_text())
        transports = config["workers"][0]["transports"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False
    for transport in transports:
        endpoint = transport.get("endpoint", {})
        if (
            transport.get("type") == "universal"
            and "rawsocket" in transport
            and endpoint.get("port") == settings.port
            and endpoint.get("interface") in (settings.host, "0.0.0.0", "::")
        ):
            return True
    return False


def crossbar_executable() -> str:
    """Path of the ``crossbar`` script installed beside this Python."""
    beside = Path(sys.executable).parent / "crossbar"
    if beside.exists():
        return str(beside)
    found = shutil.which("crossbar")
    if found is None:
        raise FileNotFoundError(
            "the 'crossbar' command is not installed; run 'make install' (or pip install 'sisock[router]')"
        )
    return found


def command(cbdir: Path, loglevel: str = "info") -> list[str]:
    """The argv that starts Crossbar on ``cbdir``."""
    return [crossbar_executable(), "start", "--cbdir", str(cbdir), "--loglevel", loglevel]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``sisock router`` options."""
    parser.add_argument("--loglevel", default="info", help="Crossbar log level (default: info)")
    parser.add_argument("--print-config", action="store_true", help="write the config, print its path and exit")
    parser.add_argument(
        "--proxies",
        type=int,
        default=0,
        metavar="N",
        help="run N proxy workers (TLS, authentication, serialization) in "
        "front of the router worker, sharing its port (default 0)",
    )


def run(args: argparse.Namespace) -> int:
    """Start Crossbar in the foreground (replaces this process)."""
    settings = load_settings(router_url=args.router_url, realm=args.realm, base_uri=args.base_uri, home=args.home)
    try:
        cbdir = prepare(settings, getattr(args, "proxies", 0))
    except ValueError as exc:
        raise SystemExit(f"sisock router: {exc}") from None
    if args.print_config:
        print(cbdir / "config.json")
        return 0
    print(
        f"sisock router: listening on {settings.router_url} "
        f"(realm {settings.realm}; credentials in {credentials.path(settings.home)})",
        flush=True,
    )
    argv = command(cbdir, args.loglevel)
    os.execv(argv[0], argv)
    return 0  # not reached
