"""Thin helpers shared by every WAMP shell: components, errors, retries.

``make_component`` builds an :class:`autobahn.twisted.component.Component`
that authenticates with WAMP-CRA, verifies a ``wss://`` router against
``SISOCK_TLS_CA``, and reconnects quickly for ever: autobahn's default
back-off is never reset after a successful join (autobahn issue #1597), so we pin
the delay to ``RETRY_DELAY`` seconds.
"""

from __future__ import annotations

from ._quiet import silence_bjdata

silence_bjdata()

import functools  # noqa: E402
from typing import Any, Callable  # noqa: E402

from autobahn.twisted.component import Component  # noqa: E402
from autobahn.wamp.exception import ApplicationError  # noqa: E402

from .errors import SisockError  # noqa: E402
from .settings import Settings  # noqa: E402

#: Seconds between reconnection attempts (constant, never grows).
RETRY_DELAY = 0.5


def transport_config(settings: Settings, serializers: list[str] | None = None,
                     max_retries: int = -1) -> dict:
    """The autobahn transport dict for ``settings.router_url``."""
    endpoint: dict[str, Any] = {"type": "tcp", "host": settings.host, "port": settings.port}
    if settings.is_tls:
        tls: dict[str, Any] = {"hostname": settings.host}
        if settings.tls_ca:
            tls["trust_root"] = settings.tls_ca
        endpoint["tls"] = tls
    return {
        "type": "websocket",
        "url": settings.router_url,
        "endpoint": endpoint,
        "serializers": serializers or ["msgpack", "cbor", "json"],
        "max_retries": max_retries,
        "initial_retry_delay": RETRY_DELAY,
        "retry_delay_growth": 1.0,
        "max_retry_delay": 1.0,
        "retry_delay_jitter": 0.1,
        "options": {"max_message_payload_size": 64 * 2**20, "auto_ping_interval": 10000,
                    "auto_ping_timeout": 5000},
    }


def make_component(settings: Settings, *, serializers: list[str] | None = None,
                   max_retries: int = -1) -> Component:
    """Create a reconnecting, authenticating component for ``settings``.

    Parameters
    ----------
    settings : Settings
        Router URL, realm, credentials (``user``/``secret``), TLS CA.
    serializers : list of str, optional
        Preferred serializers, default msgpack, cbor, json.
    max_retries : int
        -1 (default) retries for ever.
    """
    authentication = None
    if settings.user and settings.secret:
        authentication = {"wampcra": {"authid": settings.user, "secret": settings.secret}}
    return Component(
        transports=[transport_config(settings, serializers, max_retries)],
        realm=settings.realm,
        authentication=authentication,
    )


def to_application_error(exc: SisockError, base_uri: str) -> ApplicationError:
    """Turn a :class:`SisockError` into a WAMP error under ``{base}.error.``."""
    return ApplicationError(exc.uri(base_uri), str(exc))


def wamp_errors(base_uri_of: Callable[[Any], str]):
    """Decorate an RPC method so :class:`SisockError` leaves as a WAMP error.

    Parameters
    ----------
    base_uri_of : callable
        Given ``self``, returns the base URI.
    """
    def decorate(fn):
        @functools.wraps(fn)
        async def wrapper(self, *args, **kwargs):
            try:
                return await fn(self, *args, **kwargs)
            except SisockError as exc:
                raise to_application_error(exc, base_uri_of(self)) from exc
        return wrapper
    return decorate


def run_components(components: list[Component], log_level: str = "info") -> None:
    """Start the reactor with ``components`` until they are all done.

    Unlike :func:`autobahn.twisted.component.run` this returns normally
    (no ``sys.exit``), so the caller chooses the exit status.
    """
    import txaio
    from twisted.internet import reactor
    from twisted.internet.defer import DeferredList

    txaio.start_logging(level=log_level)

    def start():
        done = DeferredList([c.start(reactor) for c in components], consumeErrors=True)
        done.addBoth(lambda _: reactor.stop() if reactor.running else None)

    reactor.callWhenRunning(start)
    reactor.run()
