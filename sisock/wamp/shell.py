"""Thin helpers shared by every WAMP shell: components, errors, retries.

``make_component`` builds an :class:`autobahn.twisted.component.Component`
that authenticates with WAMP-CRA, connects over WebSocket or RawSocket as
:func:`sisock.wamp.transport.transport_config` says (the notebook client uses
the same function), verifies a TLS router against ``SISOCK_TLS_CA``, and
reconnects quickly for ever: autobahn's default back-off is never reset
after a successful join (autobahn issue #1597), so the delay is pinned to
``RETRY_DELAY`` seconds.
"""

from __future__ import annotations


from autobahn.twisted.component import Component
from autobahn.wamp.exception import ApplicationError

from sisock.core.errors import SisockError
from sisock.site.settings import Settings
from .transport import RETRY_DELAY, transport_config, transport_configs  # noqa: F401 (re-exported)


def make_component(
    settings: Settings,
    *,
    serializers: list[str] | None = None,
    max_retries: int = -1,
    streams_big_replies: bool = False,
    retry_delay: float = RETRY_DELAY,
) -> Component:
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
        :func:`sisock.wamp.transport.use_rawsocket`).
    retry_delay : float
        Seconds between reconnection attempts (the hub uses a shorter one).
    """
    authentication = None
    if settings.user and settings.secret:
        authentication = {"wampcra": {"authid": settings.user, "secret": settings.secret}}
    return Component(
        transports=transport_configs(
            settings, serializers, max_retries, streams_big_replies=streams_big_replies, retry_delay=retry_delay
        ),
        realm=settings.realm,
        authentication=authentication,
    )


def to_application_error(exc: SisockError, base_uri: str) -> ApplicationError:
    """Turn a :class:`SisockError` into a WAMP error under ``{base}.error.``."""
    return ApplicationError(exc.uri(base_uri), str(exc), **getattr(exc, "details", {}))


def run_components(components: list[Component], log_level: str = "info") -> None:
    """Start the reactor with ``components`` until they are all done.

    Unlike :func:`autobahn.twisted.component.run` this returns normally
    (no ``sys.exit``), so the caller chooses the exit status.
    """
    import sys

    import txaio
    from twisted.internet import reactor
    from twisted.internet.defer import DeferredList

    from .quietlog import QuietReconnects

    txaio.start_logging(out=QuietReconnects(sys.stdout), level=log_level)

    def start():
        done = DeferredList([c.start(reactor) for c in components], consumeErrors=True)
        done.addBoth(lambda _: reactor.stop() if reactor.running else None)

    reactor.callWhenRunning(start)
    reactor.run()
