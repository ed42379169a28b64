"""sisock 0.x API: ``DataNodeServer``, ``uri``, ``sisock_to_unix_time``.

Servers written for sisock 0.x import from here and keep working:

* subclass :class:`DataNodeServer`, set ``name`` and ``description``, and
  override ``get_fields`` / ``get_data`` or their blocking variants
  ``_get_fields_blocking`` / ``_get_data_blocking`` (run in a thread);
* run it with ``ApplicationRunner(url=WAMP_URI, realm=REALM).run(cls)``
  or, better, :func:`run` (reconnects).

The constants ``WAMP_USER``, ``WAMP_SECRET``, ``WAMP_URI``, ``REALM`` and
``BASE_URI`` are read from the settings (environment and the generated
credentials file, role ``server``) when first accessed, not at import, and
no secret has a default in code.
"""

from __future__ import annotations

from autobahn import wamp
from autobahn.twisted.wamp import ApplicationRunner, ApplicationSession
from twisted.internet import threads
from twisted.internet.defer import inlineCallbacks

from sisock.site.settings import load_settings
from sisock.core import protocol
from sisock.core.contract import DataCore
from sisock.core.errors import BadArgument, SisockError
from sisock.core.protocol import NODE_PROCEDURES, Result, Uris, sisock_to_unix_time

# the five 0.x constants are resolved lazily by the module's __getattr__ (PEP 562),
# which the undefined-name check cannot see
__all__ = [
    "DataNodeServer",
    "uri",
    "sisock_to_unix_time",
    "run",
    "WAMP_USER",  # noqa: F822
    "WAMP_SECRET",  # noqa: F822
    "WAMP_URI",  # noqa: F822
    "REALM",  # noqa: F822
    "BASE_URI",  # noqa: F822
]

_CONSTANTS = {
    "WAMP_USER": lambda s: s.user,
    "WAMP_SECRET": lambda s: s.secret,
    "WAMP_URI": lambda s: s.router_url,
    "REALM": lambda s: s.realm,
    "BASE_URI": lambda s: s.base_uri,
}


def __getattr__(name: str):
    """Resolve the 0.x constants lazily from the settings (PEP 562)."""
    if name in _CONSTANTS:
        return _CONSTANTS[name](load_settings("server"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def uri(s: str) -> str:
    """Compose a full URI: ``"%s.%s" % (BASE_URI, s)``."""
    return Uris(load_settings().base_uri)(s)


class DataNodeServer(ApplicationSession):
    """Parent class of sisock 0.x data node servers.

    Attributes
    ----------
    name : str
        Unique name of the node; the hub refuses duplicates.
    description : str
        Human-readable description for consumers.
    """

    name: str | None = None
    description: str | None = None

    def _settings(self):
        if not hasattr(self, "_sisock_settings"):
            self._sisock_settings = load_settings("server")
        return self._sisock_settings

    def onConnect(self):
        """Join the realm with WAMP-CRA as the ``server`` user."""
        self.log.info("Client session connected.")
        self.join(self.config.realm, ["wampcra"], self._settings().user)

    def onChallenge(self, challenge):
        """Answer the WAMP-CRA challenge with the ``server`` secret."""
        if challenge.method == "wampcra":
            return wamp.auth.compute_wcs(self._settings().secret, challenge.extra["challenge"])
        raise Exception("Invalid authmethod {}".format(challenge.method))

    @inlineCallbacks
    def onJoin(self, details):
        """Register ``get_fields``/``get_data``, then ask the hub to add us.

        Registrations refused now (e.g. no hub yet to vouch for our name)
        are retried whenever the hub announces ``{base}.hub.started``.
        """
        self.log.info("Successfully joined WAMP.")
        self._sisock_registered = set()
        yield self._register_procedures()
        yield self._add(details.session)
        yield self.subscribe(lambda *a, **k: self._on_hub_started(details.session), self._settings().uris.hub_started)
        self.after_onJoin(details)

    @inlineCallbacks
    def _register_procedures(self):
        uris = self._settings().uris
        for leaf in NODE_PROCEDURES:
            if leaf in self._sisock_registered:
                continue
            fn = getattr(self, leaf)
            proc = uris.node(self.name, leaf)
            try:
                yield self.register(fn, proc)
                self._sisock_registered.add(leaf)
                self.log.info("Registered procedure {p}.", p=proc)
            except Exception as e:
                self.log.error("Could not register procedure: {e}.", e=e)

    @inlineCallbacks
    def _on_hub_started(self, session_id):
        yield self._register_procedures()
        if len(self._sisock_registered) == len(NODE_PROCEDURES):
            yield self._add(session_id)

    @inlineCallbacks
    def _add(self, session_id):
        try:
            res = yield self.call(self._settings().uris.add, self.name, self.description, session_id)
            if not res:
                self.log.warn("Request to add data node denied.")
            else:
                self.log.info('Data node registered as "{n}".', n=self.name)
        except Exception as e:
            self.log.error("Call error: {e}.", e=e)

    def after_onJoin(self, details):
        """Hook for subclasses; called at the end of :meth:`onJoin`."""

    def get_fields(self, start, end):
        """Return ``[field, timeline]``; the blocking work runs in a thread.

        Checked and answered as every sisock node answers
        (:func:`sisock.core.protocol.parse_get_fields`), through
        :class:`LegacyCore`.
        """
        return threads.deferToThread(self._answer, "get_fields", (start, end), {})

    def get_data(self, field, start, end, min_stride=None, **ext):
        """Return ``{"data", "timeline"}``; the blocking work runs in a thread.

        The call is checked and the reply planned as every sisock node does
        (:mod:`sisock.core.protocol`, :func:`sisock.core.budget.plan_reply`):
        a reply larger than the caller's message limit (1 MiB unless the
        caller says more) is refused with ``{base}.error.too_much_data``
        naming a ``min_stride`` that fits, instead of dropping the caller's
        connection; ``encoding="binary"`` is served too. A 0.x caller sees
        the lists it always saw.
        """
        return threads.deferToThread(self._answer, "get_data", (field, start, end, min_stride), ext)

    def _answer(self, rpc: str, args: tuple, kwargs: dict):
        """Worker thread: the call through the data-core contract and the reply budget."""
        from sisock.core import budget

        from .shell import to_application_error

        core = LegacyCore(self)
        try:
            if rpc == "get_fields":
                start, end = protocol.parse_get_fields(args, kwargs)
                return list(core.get_fields(start, end))
            call = protocol.parse_get_data(args, kwargs)
            result = core.get_data(call.fields, call.start, call.end, call.min_stride, call.method)
            reply, _ = budget.plan_reply(
                result, call.start, call.end, call.max_message_bytes, call.encoding, False, call.method
            )
            return reply
        except SisockError as exc:
            raise to_application_error(exc, self._settings().base_uri) from None

    def _get_fields_blocking(self, start, end):
        """Override: blocking ``get_fields`` with UNIX times."""
        raise RuntimeError("This method must be overriden.")

    def _get_data_blocking(self, field, start, end, min_stride=None):
        """Override: blocking ``get_data`` with UNIX times.

        Defaults to ``get_data_blocking`` for servers written against the
        oldest 0.x releases.
        """
        legacy = getattr(self, "get_data_blocking", None)
        if legacy is not None:
            return legacy(field, start, end, min_stride)
        raise RuntimeError("This method must be overriden.")


class LegacyCore(DataCore):
    """A 0.x :class:`DataNodeServer` seen through the data-core contract.

    The server's own blocking methods answer (``_get_fields_blocking``,
    ``_get_data_blocking``, with UNIX times); their 0.x-shaped replies become
    a :class:`~sisock.core.protocol.Result`, so the node's replies go
    through the same checks and reply budget as every other node's
    (:mod:`sisock.core.contract`).
    """

    def __init__(self, server: DataNodeServer) -> None:
        self._server = server

    @property
    def name(self) -> str:  # type: ignore[override]
        """The server's ``name``."""
        return str(self._server.name)

    @property
    def description(self) -> str:  # type: ignore[override]
        """The server's ``description``."""
        return str(self._server.description or "")

    def get_fields(self, start: float, end: float) -> tuple[dict, dict]:
        """``(field, timeline)`` from the server's ``_get_fields_blocking``."""
        field, timeline = self._server._get_fields_blocking(start, end)
        return field, timeline

    def get_data(
        self,
        fields: list[str],
        start: float,
        end: float,
        min_stride: float | None = None,
        method: str = "mean",
        *,
        streaming: bool = False,
    ) -> Result:
        """The server's ``_get_data_blocking`` reply as a :class:`Result`.

        A 0.x node downsamples its own way, so only the default ``method``
        is accepted.
        """
        if method != "mean":
            raise BadArgument(
                f"method={method!r}: node {self.name!r} is a sisock 0.x node and "
                "downsamples its own way; leave 'method' out"
            )
        return Result.coerce(self._server._get_data_blocking(fields, start, end, min_stride))


def run(cls: type[DataNodeServer]) -> None:
    """Run a :class:`DataNodeServer` subclass, reconnecting when the router restarts."""
    settings = load_settings("server")
    ssl = None
    if settings.is_tls and settings.tls_ca:
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        with open(settings.tls_ca) as f:
            ssl = optionsForClientTLS(settings.host, trustRoot=Certificate.loadPEM(f.read()))
    runner = ApplicationRunner(url=settings.router_url, realm=settings.realm, ssl=ssl)
    runner.run(cls, auto_reconnect=True)
