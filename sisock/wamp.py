"""Thin helpers shared by every WAMP shell: components, errors, retries.

``make_component`` builds an :class:`autobahn.twisted.component.Component`
that authenticates with WAMP-CRA, connects over WebSocket or RawSocket as
:func:`sisock.transport.transport_config` says (the notebook client uses
the same function), verifies a TLS router against ``SISOCK_TLS_CA``, and
reconnects quickly for ever (``RETRY_DELAY`` seconds between attempts).
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
from .transport import RETRY_DELAY, transport_config, transport_configs  # noqa: E402,F401


def make_component(settings: Settings, *, serializers: list[str] | None = None,
                   max_retries: int = -1, streams_big_replies: bool = False) -> Component:
    """Create a reconnecting, authenticating component for ``settings``.

    Parameters
    ----------
    settings : Settings
        Router URL, realm, credentials (``user``/``secret``), TLS CA.
    serializers : list of str, optional
        Preferred serializers, default msgpack, cbor, json.
    max_retries : int
        -1 (default) retries for ever.
    streams_big_replies : bool
        True for a data node: with ``SISOCK_ROUTER_RAWSOCKET=auto`` it then
        speaks RawSocket to a local router that offers it (see
        :func:`sisock.transport.use_rawsocket`).
    """
    authentication = None
    if settings.user and settings.secret:
        authentication = {"wampcra": {"authid": settings.user, "secret": settings.secret}}
    return Component(
        transports=transport_configs(settings, serializers, max_retries,
                                     streams_big_replies=streams_big_replies),
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
