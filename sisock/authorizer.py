"""Router-embedded dynamic authorizer for the ``server`` role.

Crossbar starts :class:`Authorizer` inside the router worker (see
``crossbar/config.json``) before the transports open, so every decision for
a data node goes through :func:`sisock.authz.decide` and, for names, through
the hub's ``data_node.claim``.
"""

from __future__ import annotations

from autobahn.twisted.wamp import ApplicationSession
from twisted.internet.defer import inlineCallbacks

from .authz import decide


class Authorizer(ApplicationSession):
    """Registers ``{base}.authorize`` inside the router."""

    @inlineCallbacks
    def onJoin(self, details):  # noqa: N802 (autobahn API)
        """Register the authorizer procedure."""
        self._base = (self.config.extra or {}).get("base_uri", "org.simonsobservatory")
        yield self.register(self.authorize, f"{self._base}.authorize")
        self.log.info("sisock authorizer ready for base URI {base}", base=self._base)

    @inlineCallbacks
    def authorize(self, session, uri, action, options=None):
        """Crossbar dynamic-authorizer entry point.

        Never returns ``cache: True``: the answer depends on the session.
        """
        match = (options or {}).get("match", "exact")
        decision = decide(self._base, uri, action, match)
        if decision.verdict == "allow":
            return {"allow": True, "disclose": False, "cache": False}
        if decision.verdict == "allow_disclose":
            return {"allow": True, "disclose": True, "cache": False}
        if decision.verdict == "deny":
            return {"allow": False, "disclose": False, "cache": False}
        try:
            ok = yield self.call(
                f"{self._base}.data_node.claim", decision.name, session["session"]
            )
        except Exception as exc:  # hub not running: refuse, the node retries
            self.log.warn(
                "refusing {action} {uri}: cannot ask the hub ({exc})",
                action=action, uri=uri, exc=exc,
            )
            ok = False
        return {"allow": bool(ok), "disclose": False, "cache": False}
