"""``sisock web``: the HTTP bridge and dashboard as one consumer process.

Binds 127.0.0.1 unless ``--host`` says otherwise. ``--token`` (or
``SISOCK_WEB_TOKEN``) makes every endpoint require that token;
``--cors-origin`` (or ``SISOCK_WEB_CORS``, comma-separated) allows
cross-origin browsers from those origins; otherwise CORS is off.
Only requests whose ``Host`` is localhost, an IP address or a name given
with ``--allowed-host`` (or
``SISOCK_WEB_ALLOWED_HOSTS``, comma-separated) are answered.
``--trust-proxy`` believes ``X-Forwarded-Proto`` from a reverse proxy.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sisock.site.settings import Settings


def default_static_dir() -> Path | None:
    """Where the built dashboard is: ``SISOCK_WEB_STATIC``, the source tree's
    ``web/dist`` (editable installs), or ``<prefix>/share/sisock/web``."""
    env = os.environ.get("SISOCK_WEB_STATIC")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "web" / "dist", Path(sys.prefix) / "share" / "sisock" / "web"]
    for c in candidates:
        if (c / "index.html").exists():
            return c
    return candidates[0] if candidates else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``sisock web``."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)"
    )
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument(
        "--token",
        default=None,
        help="access token required on every endpoint (SISOCK_WEB_TOKEN; prefer the environment)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="allow cross-origin requests from ORIGIN (repeatable, '*' for any; "
        "SISOCK_WEB_CORS, comma-separated); default: CORS off",
    )
    parser.add_argument(
        "--static",
        type=Path,
        default=None,
        help="directory of the built dashboard (default: web/dist of the source tree)",
    )
    parser.add_argument(
        "--max-values", type=int, default=20_000_000, help="most values one answer may hold (default 20000000)"
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=None,
        metavar="NAME",
        help="also answer requests whose Host header is NAME (repeatable; "
        "SISOCK_WEB_ALLOWED_HOSTS, comma-separated; '*' for any). "
        "Default: localhost and IP addresses only (protection "
        "against DNS rebinding)",
    )
    parser.add_argument(
        "--trust-proxy",
        action="store_true",
        default=os.environ.get("SISOCK_WEB_TRUST_PROXY", "") not in ("", "0"),
        help="believe X-Forwarded-Proto: https from a reverse proxy (the "
        "token cookie is then Secure); only behind a proxy that sets "
        "that header itself (SISOCK_WEB_TRUST_PROXY=1)",
    )


def dashboard_url(host: str, port: int) -> str:
    """The URL to print: a wildcard bind is reached through 127.0.0.1."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until interrupted."""
    from twisted.internet import reactor

    from sisock.wamp.shell import run_components
    from .session import Bridge
    from .http import WebConfig, make_site

    token = args.token or os.environ.get("SISOCK_WEB_TOKEN") or None
    origins = args.cors_origin or [o.strip() for o in os.environ.get("SISOCK_WEB_CORS", "").split(",") if o.strip()]
    if args.max_values < 1:
        from sisock.core.errors import BadArgument

        raise BadArgument(f"--max-values must be at least 1, got {args.max_values}")
    static = args.static or default_static_dir()
    hosts = args.allowed_host or [
        h.strip() for h in os.environ.get("SISOCK_WEB_ALLOWED_HOSTS", "").split(",") if h.strip()
    ]
    bridge = Bridge(settings)
    try:
        config = WebConfig(token, origins, static, args.max_values, hosts, getattr(args, "trust_proxy", False))
    except ValueError as exc:
        print(f"sisock web: {exc}", file=sys.stderr)
        return 2
    site, _ = make_site(bridge, config)
    try:
        reactor.listenTCP(args.port, site, interface=args.host)
    except Exception as exc:  # CannotListenError: say what, no traceback
        print(f"sisock web: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print(
        f"sisock web: dashboard at {dashboard_url(args.host, args.port)}" + (" (token required)" if token else ""),
        flush=True,
    )
    run_components([bridge.component], args.log_level)
    return 0
