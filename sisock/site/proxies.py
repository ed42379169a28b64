"""Proxy workers in front of the router worker (``sisock router --proxies N``).

One realm lives in one Crossbar router worker, which is one process and so
one core. Crossbar's *proxy workers* take over what costs CPU per
connection — TLS, WebSocket framing, authentication and (de)serialization —
and forward WAMP messages to the router worker over a local Unix socket.
:func:`with_proxies` rewrites a rendered single-worker config:

* the router worker keeps its realm, roles and the embedded authorizer,
  and listens only on ``$SISOCK_HOME/router/router.sock``, accepting
  ``anonymous-proxy`` authentication there (Crossbar allows it on Unix
  sockets only; the socket file is reachable by this user only);
* N proxy workers each listen on every public transport of the router (the
  same ports, shared with ``SO_REUSEPORT``: the kernel spreads connections
  over them), with the same transport options, serializers, TLS and
  WAMP-CRA users as the single router had, and route every role to the
  router worker.

Clients see no difference: same URL, credentials and URIs. Every session
still joins the one realm, so the hub, the authorizer and caller
disclosure work as before.
"""

from __future__ import annotations

import copy
from pathlib import Path

#: File name of the router worker's Unix socket inside the Crossbar node directory.
SOCKET_NAME = "router.sock"

#: Roles whose sessions come through the proxies (the authorizer is embedded).
PROXIED_ROLES = ("hub", "server", "consumer", "operator")


def max_message_size(transport: object) -> int:
    """The largest ``max_message_size`` anywhere in a transport config (16 MiB if none)."""
    found: list[int] = []

    def walk(obj: object) -> None:
        if isinstance(obj, dict):
            if isinstance(obj.get("max_message_size"), int):
                found.append(obj["max_message_size"])
            for value in obj.values():
                walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)

    walk(transport)
    return max(found, default=16 * 2**20)


def backend_transport(socket_path: Path, public: list[dict]) -> dict:
    """The router worker's transport towards the proxies (a Unix-socket WebSocket)."""
    return {
        "type": "websocket",
        "endpoint": {"type": "unix", "path": str(socket_path)},
        "serializers": ["msgpack", "cbor", "json"],
        "options": {"max_message_size": max_message_size(public)},
        "auth": {"anonymous-proxy": {"type": "static"}},
    }


def proxy_worker(index: int, public: list[dict], socket_path: Path, realm: str) -> dict:
    """One proxy worker listening on the public transports, forwarding to ``socket_path``."""
    transports = copy.deepcopy(public)
    for transport in transports:
        transport["endpoint"]["shared"] = True
        transport.pop("id", None)
    max_size = max_message_size(public)
    return {
        "type": "proxy",
        "id": f"proxy{index + 1}",
        "connections": {
            "router": {
                "transport": {
                    "type": "websocket",
                    "endpoint": {"type": "unix", "path": str(socket_path)},
                    "url": "ws://localhost",
                    "serializers": ["msgpack"],
                    "options": {"max_message_payload_size": max_size},
                },
                "auth": {"anonymous-proxy": {"type": "static"}},
            }
        },
        "routes": {realm: {role: "router" for role in PROXIED_ROLES}},
        "transports": transports,
    }


def with_proxies(config: dict, proxies: int, cbdir: Path) -> dict:
    """Return ``config`` with ``proxies`` proxy workers in front of its router worker.

    Parameters
    ----------
    config : dict
        A rendered single-worker config (:func:`sisock.site.router.render`).
    proxies : int
        Number of proxy workers, at least 1 (0 returns ``config`` unchanged).
    cbdir : pathlib.Path
        The Crossbar node directory; the router worker's socket lives there.

    Returns
    -------
    dict
        A new config.

    Raises
    ------
    ValueError
        If ``proxies`` is negative or above 64, or the socket path is too
        long for a Unix socket.
    """
    if not 0 <= proxies <= 64:
        raise ValueError(f"--proxies must be between 0 and 64, got {proxies}")
    if proxies == 0:
        return config
    socket_path = Path(cbdir).resolve() / SOCKET_NAME
    if len(str(socket_path)) > 100:
        raise ValueError(
            f"the router socket path {socket_path} is longer than a Unix socket "
            "allows (100 characters): use a shorter SISOCK_HOME"
        )
    out = copy.deepcopy(config)
    router = out["workers"][0]
    public = router["transports"]
    realm = router["realms"][0]["name"]
    router["transports"] = [backend_transport(socket_path, public)]
    out["workers"] += [proxy_worker(i, public, socket_path, realm) for i in range(proxies)]
    return out
