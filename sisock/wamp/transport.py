"""Autobahn transport settings for every sisock program, from :class:`Settings`.

One function, :func:`transport_config`, builds the transport dict that both
of autobahn's ``Component`` classes accept: the Twisted one (nodes, hub,
web bridge) and the asyncio one (the notebook client). It imports neither,
so either framework can use it.

The URL scheme picks the WAMP transport: ``ws://``/``wss://`` WebSocket,
``rs://``/``rss://`` RawSocket. The shipped router speaks both on the one
port of ``SISOCK_ROUTER_URL``. RawSocket frames are a 4-byte length
prefix: no per-frame masking of client data, no HTTP upgrade; its
messages are limited to 16 MiB by the protocol, so large replies are
streamed in smaller parts (see :mod:`sisock.core.wire`).

Reconnection: autobahn's default back-off is never reset after a
successful join, so the delay is pinned to ``RETRY_DELAY`` seconds, with
no jitter: autobahn draws each delay around the previous one
(``normalvariate(d, jitter * d)``, capped above, never below), a random
walk that drifts to zero, so after some minutes of outage a process
retried thousands of times a second.
"""

from __future__ import annotations

from typing import Any

from sisock.core.protocol import RAWSOCKET_MESSAGE_BYTES, ROUTER_MESSAGE_BYTES, transport_message_bytes
from sisock.site.settings import Settings

#: Seconds between reconnection attempts (constant, never grows).
RETRY_DELAY = 0.5
#: The hub's delay: after a router restart it should be back before the
#: hundreds of nodes that need it to get their names (a refused attempt is
#: one cheap TCP connection).
HUB_RETRY_DELAY = 0.2

#: Largest message a RawSocket peer may send (the protocol's limit, 16 MiB).
RAWSOCKET_MAX_MESSAGE = RAWSOCKET_MESSAGE_BYTES
#: Largest WebSocket message we accept: the router's limit (one constant in
#: :mod:`sisock.core.protocol`; ``sisock router`` writes it into the router config).
WEBSOCKET_MAX_MESSAGE = ROUTER_MESSAGE_BYTES


def message_limit(kind_or_connection: object) -> int:
    """The largest message a transport carries.

    Parameters
    ----------
    kind_or_connection : str or object
        ``"rawsocket"`` / ``"websocket"`` (a transport config's ``type``), or
        an autobahn session's connection object (``session.transport``).
    """
    if isinstance(kind_or_connection, str):
        return transport_message_bytes(kind_or_connection)
    # autobahn's RawSocket protocol classes live in autobahn.*.rawsocket
    rawsocket = "rawsocket" in type(kind_or_connection).__module__
    return transport_message_bytes("rawsocket" if rawsocket else "websocket")


def transport_config(
    settings: Settings,
    serializers: list[str] | None = None,
    max_retries: int = -1,
    timeout: float | None = None,
    kind: str | None = None,
    retry_delay: float = RETRY_DELAY,
) -> dict:
    """The autobahn transport dict for ``settings.router_url``.

    Parameters
    ----------
    settings : Settings
        Router URL and TLS CA. ``ws://``/``wss://`` gives WAMP over
        WebSocket; ``rs://``/``rss://`` WAMP over RawSocket.
    serializers : list of str, optional
        Preferred serializers, default msgpack, cbor, json. RawSocket
        carries exactly one: the first.
    max_retries : int
        -1 (default) retries for ever.
    timeout : float, optional
        Seconds to wait for the TCP (and TLS) connection.
    kind : {"websocket", "rawsocket"}, optional
        Override the URL's scheme (same host, port and TLS).
    retry_delay : float
        Seconds between reconnection attempts.
    """
    serializers = serializers or ["msgpack", "cbor", "json"]
    kind = kind or ("rawsocket" if settings.is_rawsocket else "websocket")
    endpoint: dict[str, Any] = {"type": "tcp", "host": settings.host, "port": settings.port}
    if timeout is not None:
        endpoint["timeout"] = max(1, int(timeout))
    if settings.is_tls:
        tls: dict[str, Any] = {"hostname": settings.host}
        if settings.tls_ca:
            tls["trust_root"] = settings.tls_ca
        endpoint["tls"] = tls
    config: dict[str, Any] = {
        "endpoint": endpoint,
        "max_retries": max_retries,
        "initial_retry_delay": retry_delay,
        "retry_delay_growth": 1.0,
        "max_retry_delay": max(1.0, retry_delay),
        "retry_delay_jitter": 0.0,  # see the module's docstring: jitter here drifts to zero
    }
    if kind == "rawsocket":
        scheme = "rss" if settings.is_tls else "rs"
        config.update(
            type="rawsocket",
            url=f"{scheme}://{settings.host}:{settings.port}",
            serializer=serializers[0],
            options={"max_message_payload_size": RAWSOCKET_MAX_MESSAGE},
        )
    else:
        url = settings.router_url
        if settings.is_rawsocket:
            scheme = "wss" if settings.is_tls else "ws"
            url = f"{scheme}://{settings.host}:{settings.port}/ws"
        config.update(
            type="websocket",
            url=url,
            serializers=serializers,
            options={
                "max_message_payload_size": WEBSOCKET_MAX_MESSAGE,
                # seconds (autobahn): a vanished link is noticed within 15 s
                "auto_ping_interval": 10,
                "auto_ping_timeout": 5,
            },
        )
    return config


def use_rawsocket(settings: Settings, streams_big_replies: bool = False) -> bool:
    """Whether to try RawSocket first for ``settings``.

    An ``rs://``/``rss://`` URL always does. With a ``ws(s)://`` URL,
    ``SISOCK_ROUTER_RAWSOCKET=yes`` does, ``no`` does not, and ``auto``
    (the default) does for a program whose big messages travel streamed in
    small parts (``streams_big_replies``: a data node, and the notebook
    client asking for binary arrays) when the router last started from this
    ``SISOCK_HOME`` listens on that host and port with RawSocket too, as
    ``sisock router`` does (nothing is probed over the network).

    Other programs (hub, web bridge, JSON clients) keep WebSocket under
    ``auto``: a RawSocket message is at most 16 MiB, a WebSocket one 64 MiB.
    A data node on RawSocket refuses one-message replies over 16 MiB with
    ``too_much_data`` (sisock 0.x routers had that limit on WebSocket too).
    """
    if settings.is_rawsocket:
        return True
    if settings.rawsocket == "auto":
        if not streams_big_replies:
            return False
        from sisock.site.router import offers_rawsocket

        return offers_rawsocket(settings)
    return settings.rawsocket == "yes"


def transport_configs(
    settings: Settings,
    serializers: list[str] | None = None,
    max_retries: int = -1,
    timeout: float | None = None,
    streams_big_replies: bool = False,
    retry_delay: float = RETRY_DELAY,
) -> list[dict]:
    """The transports to try, in order: RawSocket first when
    :func:`use_rawsocket` says so (with WebSocket as the fallback for a
    ``ws(s)://`` URL), else WebSocket only. Arguments as
    :func:`transport_config` and :func:`use_rawsocket`."""
    websocket = transport_config(settings, serializers, max_retries, timeout, "websocket", retry_delay)
    if not use_rawsocket(settings, streams_big_replies):
        return [websocket]
    rawsocket = transport_config(settings, serializers, max_retries, timeout, "rawsocket", retry_delay)
    return [rawsocket] if settings.is_rawsocket else [rawsocket, websocket]
